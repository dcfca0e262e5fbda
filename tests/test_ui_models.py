"""The Models tab: each VM's models, pulls, and the keys that act on them.

Pictures (snapshots/test_ui_models/, 80x24) are the whole console on the demo fleet
with a stand-in library (`StubLibrary`) that answers a hand-made `ModelsSnapshot` at
fixed times, and pinned GPU telemetry, so every run draws the same screen. The keys are
tested against the real `ModelLibrary` talking to `FakeOllama` (the demo's loopback
Ollama) where a server's answer matters, and against the stand-in where only the tab's
own behaviour does (read-only, invalid names, refreshing only while shown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from textual.app import App, ComposeResult
from textual.command import CommandPalette
from textual.content import Content
from textual.pilot import Pilot

from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.domain.gpu import GpuSample
from aiconsole.domain.gpu_levels import Level
from aiconsole.domain.models import (
    InstalledModel,
    LayerProgress,
    LoadedModel,
    ModelDetails,
    PullState,
    PullStatus,
    PullTracker,
)
from aiconsole.domain.telemetry import FeedState, GpuView, HostTelemetry, TelemetrySnapshot
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.model_library import (
    DiskUsage,
    ModelLibrary,
    ModelServer,
    ModelsSnapshot,
    PullJob,
    ServerModels,
)
from aiconsole.services.ollama_models import checked_name
from aiconsole.ui.app import AiConsoleApp
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.model_details import ModelDetailsScreen
from aiconsole.ui.model_source import ModelSource
from aiconsole.ui.models_pane import ModelsPane, ReadOnlyModelsPane
from aiconsole.ui.pull_dialog import PullDialog
from aiconsole.ui.widgets.model_lines import (
    WIDE_WIDTH,
    Layout,
    RowKey,
    ago,
    column_titles,
    fit_content,
    fit_for,
    gpu_memory,
    model_row,
    until_text,
)
from aiconsole.ui.widgets.pull_lines import pull_lines
from aiconsole.ui.widgets.selectable_lines import Item, SelectableLines
from test_ui_tab_snapshots import PinnedTelemetry
from test_ui_tabs import Counter
from ui_helpers import (
    FIXED_NOW,
    demo_app,
    fleet_ready,
    footer_labels,
    has_control_chars,
    help_shows,
    notifications,
    screen_shows,
    screen_text,
    telemetry_app,
    telemetry_live,
    wait_until,
)

SIZE = (80, 24)
AT = FIXED_NOW
GB = 10**9
MIB = 1024 * 1024


# --- hand-made library data -----------------------------------------------------------------


def installed(name: str, size: int, family: str, params: str, quant: str, days: float) -> InstalledModel:
    return InstalledModel(name, size, AT - timedelta(days=days), family, params, quant, digest="0" * 64)


INFERENCE_MODELS = (
    installed("deepseek-coder-v2:16b", 8_905_126_121, "deepseek2", "15.7B", "Q4_0", 2),
    installed("llama3.1:8b", 4_920_753_328, "llama", "8.0B", "Q4_K_M", 7),
    installed("mistral:7b", 4_113_301_824, "llama", "7.2B", "Q4_0", 12),
)
LOADED_LLAMA = LoadedModel("llama3.1:8b", 6_193_000_000, 6_193_000_000, 8192, AT + timedelta(minutes=4, seconds=12))
LOADED_DEEPSEEK = LoadedModel("deepseek-coder-v2:16b", 10_400_000_000, 5_000_000_000, 4096, None)
HOMELAB_MODELS = (
    installed("qwen2.5:32b", 19_851_336_436, "qwen2", "32.8B", "Q4_K_M", 30),
    installed("llama3.1:8b", 4_920_753_328, "llama", "8.0B", "Q4_K_M", 40),
)
HOMELAB_ERROR = "listing models: cannot reach Ollama at http://10.0.0.5:11434 (connection refused)"


def servers() -> tuple[ServerModels, ...]:
    inference = ModelServer("inference", "ollama", "ollama", hourly_usd=0.35)
    homelab = ModelServer("homelab", "ollama", "ollama")
    brain = ModelServer("brain", "localai", "openai")
    return (
        ServerModels(
            inference, INFERENCE_MODELS, (LOADED_LLAMA, LOADED_DEEPSEEK),
            disk=DiskUsage(100 * GB, 38 * GB, 62 * GB, "/"), fetched_at=AT - timedelta(seconds=12),
        ),
        ServerModels(homelab, HOMELAB_MODELS, fetched_at=AT - timedelta(minutes=3, seconds=5), error=HOMELAB_ERROR),
        ServerModels(brain, listed=("llama-3-8b-instruct", "phi-3-mini"), fetched_at=AT - timedelta(seconds=12)),
    )  # fmt: skip


def running_pull() -> PullStatus:
    layers = (
        LayerProgress("sha256:" + "6a0746a1ec1a" + "0" * 52, 4_683_073_184, 1_966_890_737),
        LayerProgress("sha256:" + "4fa551d4f938" + "0" * 52, 12_403, 12_403),
    )
    return PullStatus("qwen2.5:7b", PullState.RUNNING, "pulling 6a0746a1ec1a", layers, 41.0, 48_000_000.0, 0.35)


def failed_pull() -> PullStatus:
    layers = (LayerProgress("sha256:" + "a" * 64, 2_000_000_000, 700_000_000),)
    error = "pulling phi3:mini: the connection dropped mid-answer; pull again to resume where it stopped"
    return PullStatus("phi3:mini", PullState.FAILED, "pulling aaaaaaaaaaaa", layers, 12.0, None, 0.0, error)


def gpu_telemetry(used_mib: float = 12_000.0) -> TelemetrySnapshot:
    """inference: one RTX 4090, live; homelab and brain: none."""
    sample = GpuSample(0, "GPU-0", "NVIDIA GeForce RTX 4090", 55, used_mib, 24_564.0, 40, 200.0, 450.0, AT)
    view = GpuView(sample, Level.OK, Level.OK, stale=False, age_s=0.5)
    return TelemetrySnapshot(AT, (HostTelemetry("inference", FeedState.LIVE, gpus=(view,), updated_at=AT),))


@dataclass
class StubLibrary:
    """The library's surface, answering a fixed snapshot; records what the tab asked."""

    servers: tuple[ServerModels, ...] = field(default_factory=servers)
    pulls: list[tuple[str, PullStatus]] = field(default_factory=list)
    calls: list[tuple] = field(default_factory=list)
    retryable: bool = True

    def snapshot(self) -> ModelsSnapshot:
        return ModelsSnapshot(AT, self.servers, tuple(s for _, s in self.pulls), tuple(vm for vm, _ in self.pulls))

    async def refresh(self, vm: str | None = None) -> None:
        self.calls.append(("refresh", vm))

    def pull(self, vm: str, model: str) -> PullJob:
        self.calls.append(("pull", vm, model))
        name = checked_name(model)
        self.pulls.append((vm, PullStatus(name, PullState.RUNNING, "pulling manifest", (), 0.0, None, 0.35)))
        return PullJob(vm, name, PullTracker(name, 0.0), retryable=self.retryable)

    def cancel_pull(self, vm: str, model: str) -> bool:
        self.calls.append(("cancel_pull", vm, model))
        return True

    def forget_pull(self, vm: str, model: str) -> None:
        self.calls.append(("forget_pull", vm, model))

    async def delete(self, vm: str, model: str) -> None:
        self.calls.append(("delete", vm, model))

    async def unload(self, vm: str, model: str) -> None:
        self.calls.append(("unload", vm, model))

    async def details(self, vm: str, model: str) -> ModelDetails:
        self.calls.append(("details", vm, model))
        return ModelDetails(
            model, "llama", "8.0B", "Q4_K_M", 131072, ("completion", "tools"), kv_bytes_per_token=131072
        )


def on_models_tab(library: StubLibrary, telemetry: TelemetrySnapshot | None = None, *keys: str):
    """run_before: the Models tab on `library` with pinned GPU figures, then `keys` pressed."""

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await fleet_ready(pilot)
        console = app.console_tabs
        console.use_telemetry(PinnedTelemetry(telemetry or gpu_telemetry()))
        console.use_models(library)
        await pilot.press("4")
        await wait_until(pilot, lambda: console.models.live, what="the Models tab")
        if keys:
            await pilot.press(*keys)
        await pilot.pause()
        app.clear_notifications()
        await pilot.pause()

    return run_before


def models(app: AiConsoleApp) -> ModelsPane:
    return app.console_tabs.models


# --- pictures ---------------------------------------------------------------------------------


def test_library_with_loaded_and_unloaded_models(snap_compare, tmp_path: Path) -> None:
    """inference: two of three loaded (one all on the GPU, one split with the CPU), disk and
    VRAM lines; homelab: stale for 3m 05s with its error; brain: an OpenAI server, read-only."""
    library = StubLibrary()
    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=on_models_tab(library))


def test_pull_in_progress(snap_compare, tmp_path: Path) -> None:
    """qwen2.5:7b at 42 % on inference (overall and layer bars, speed, ETA, cost, fit);
    phi3:mini failed on homelab with the server's message, retryable."""
    library = StubLibrary(pulls=[("inference", running_pull())])

    async def run_before(pilot: Pilot) -> None:
        await on_models_tab(library)(pilot)
        models(pilot.app).start_pull("homelab", "phi3:mini")  # the tab keeps the job: it knows it is retryable
        library.pulls[-1] = ("homelab", failed_pull())
        models(pilot.app).paint()
        await pilot.pause()
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_pull_dialog_with_a_fit_warning(snap_compare, tmp_path: Path) -> None:
    """p on inference, qwen2.5:32b typed: its size is known from homelab, and it fits only
    once Ollama unloads both loaded models (EVICTS)."""
    library = StubLibrary()
    keys = ("p", *"qwen2.5:32b")
    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=on_models_tab(library, None, *keys))


def test_delete_confirm(snap_compare, tmp_path: Path) -> None:
    """d on mistral:7b: the question names the model and VM and says what it frees."""
    library = StubLibrary()
    keys = ("down", "down", "down", "d")
    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=on_models_tab(library, None, *keys))


# --- keys, against the real library and FakeOllama ------------------------------------------------


def ollama_library(fake: FakeOllama, hourly_usd: float = 0.35) -> ModelLibrary:
    endpoints = Endpoints()
    endpoints.add("inference", "ollama", fake.url)
    return ModelLibrary([ModelServer("inference", "ollama", "ollama", hourly_usd)], endpoints)


async def models_tab_on(pilot: Pilot, library: ModelSource) -> ModelsPane:
    """The Models tab on `library` (inference's GPU pinned), showing its first answers."""
    await fleet_ready(pilot)
    console = pilot.app.console_tabs
    console.use_telemetry(PinnedTelemetry(gpu_telemetry()))
    console.use_models(library)
    await pilot.press("4")
    pane = console.models
    await wait_until(pilot, lambda: pane.snapshot is not None and all(s.fetched_at for s in pane.snapshot.servers),
                     what="the servers' first answers")  # fmt: skip
    return pane


async def select(pilot: Pilot, pane: ModelsPane, name: str) -> None:
    """Move the selection to the model `name`, with the keys: from the top, down."""
    await pilot.press("home")
    for _ in range(20):
        if pane.selected is not None and pane.selected.name == name:
            return
        await pilot.press("down")
    raise AssertionError(f"{name} not selectable; selected {pane.selected}")


@asynccontextmanager
async def models_console(
    tmp_path: Path, library: ModelSource, *, read_only: bool = False, size: tuple[int, int] = SIZE
) -> AsyncIterator[tuple[AiConsoleApp, Pilot, ModelsPane]]:
    """The console on the demo fleet, its Models tab showing `library`."""
    app = demo_app(tmp_path, read_only=read_only)
    async with app.run_test(size=size) as pilot:
        yield app, pilot, await models_tab_on(pilot, library)


@asynccontextmanager
async def ollama_console(tmp_path: Path, fake: FakeOllama) -> AsyncIterator[tuple[AiConsoleApp, Pilot, ModelsPane]]:
    """The console's Models tab on the real library, reading `fake` as VM inference's Ollama."""
    library = ollama_library(fake)
    try:
        async with models_console(tmp_path, library) as console:
            yield console
    finally:
        await library.aclose()


def row_of(app: AiConsoleApp, name: str) -> str:
    """The model's row in its server's table ("" if none): its name follows the 2-cell mark."""
    return next((line for line in screen_text(app).splitlines() if line[2:].startswith(f"{name} ")), "")


async def test_u_unloads_d_deletes_after_asking_enter_shows_details(tmp_path: Path) -> None:
    async with FakeOllama(loaded=["llama3.1:8b"]) as fake, ollama_console(tmp_path, fake) as (app, pilot, pane):
        await screen_shows(pilot, "● llama3.1:8b", "unloads in 4m")
        await select(pilot, pane, "llama3.1:8b")
        await pilot.press("u")
        await wait_until(pilot, lambda: not fake.loaded, what="the model unloaded")
        await wait_until(pilot, lambda: "unloads in" not in screen_text(app), what="the board redrawn")
        assert row_of(app, "llama3.1:8b").startswith("  llama3.1:8b")  # no ● any more

        await select(pilot, pane, "mistral:7b")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await screen_shows(pilot, "Delete mistral:7b from inference?", "This frees 4.4 GB of disk on inference")
        await pilot.press("n")
        assert "mistral:7b" in fake.installed, "cancelled: nothing deleted"
        await pilot.press("d", "y")
        await wait_until(pilot, lambda: "mistral:7b" not in fake.installed, what="the model deleted")
        await wait_until(pilot, lambda: not row_of(app, "mistral:7b"), what="its row gone")

        await select(pilot, pane, "deepseek-coder-v2:16b")
        await pilot.press("enter")
        assert isinstance(app.screen, ModelDetailsScreen)
        text = await screen_shows(pilot, "capabilities completion, insert", "Template", "at context 4096:")
        assert "deepseek2 · 15.7B · Q4_0 · trained context 163840" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, ModelDetailsScreen)


async def test_p_pulls_a_model_showing_progress_at_least_four_times_a_second(tmp_path: Path) -> None:
    async with FakeOllama() as fake, ollama_console(tmp_path, fake) as (app, pilot, pane):
        fake.pulls.rate_bps = 2e9  # 4.7 GB in ~2.5 s
        await pilot.press("p")
        assert isinstance(app.screen, PullDialog)
        await pilot.press(*"qwen2.5-coder:7b")
        await screen_shows(pilot, "the estimate comes when the download's size is known")
        paints = Counter(pane.board.show)
        pane.board.show = paints  # type: ignore[method-assign]
        await pilot.press("enter")
        assert not isinstance(app.screen, PullDialog)
        await screen_shows(pilot, "⇣ inference", "qwen2.5-coder:7b", "ETA", "fits: needs ~")
        before = paints.calls
        await pilot.pause(1.0)
        assert paints.calls - before >= 4, "a running pull is redrawn at least four times a second"
        await screen_shows(pilot, "✓ inference", "pulled 4.7 GB in", timeout=15)
        assert "qwen2.5-coder:7b" in fake.installed
        await wait_until(pilot, lambda: row_of(app, "qwen2.5-coder:7b").startswith("  qwen2.5-coder:7b"),
                         what="the pulled model in the table")  # fmt: skip
        calls = paints.calls
        await pilot.pause(0.6)
        assert paints.calls - calls <= 1, "no pull frames once the pull is done (only the 1 s tick)"


async def test_c_and_escape_cancel_a_pull_and_dismiss_it(tmp_path: Path) -> None:
    async with FakeOllama() as fake, ollama_console(tmp_path, fake) as (app, pilot, pane):
        fake.pulls.rate_bps = 20e6  # minutes: it is cancelled long before
        pane.start_pull("inference", "gemma3:12b")
        await screen_shows(pilot, "⇣ inference", "gemma3:12b")
        await pilot.press("home")  # the pull's row, at the top
        assert pane.selected == RowKey("pull", "inference", "gemma3:12b")
        await pilot.press("c")
        await screen_shows(pilot, "○ inference", "cancelled at")
        await pilot.press("c")  # a finished pull: dismissed
        await wait_until(pilot, lambda: "gemma3:12b" not in screen_text(app), what="the pull dismissed")
        assert not pane.library.snapshot().pulls

        pane.start_pull("inference", "gemma3:12b")
        await screen_shows(pilot, "⇣ inference")
        await pilot.press("home", "escape")
        await screen_shows(pilot, "○ inference", "cancelled at")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not pane.library.snapshot().pulls, what="the pull dismissed")
        await pilot.press("escape")  # esc elsewhere: nothing to cancel, nothing said
        await pilot.pause()
        assert not any("Select a pull" in message for _, message in notifications(app))


async def test_a_failed_pull_shows_why_and_whether_p_can_retry_it(tmp_path: Path) -> None:
    async with FakeOllama() as fake, ollama_console(tmp_path, fake) as (_, pilot, pane):
        fake.pulls.rate_bps = 2e9
        fake.cut_pull_after(4)
        pane.start_pull("inference", "phi3:mini")
        await screen_shows(pilot, "✖ inference", "failed at", "the connection dropped mid-answer", "can be retried")
        await pilot.press("home", "p")  # p on a failed pull: again, resuming
        await screen_shows(pilot, "✓ inference", "pulled 2.2 GB in", timeout=15)
        assert "phi3:mini" in fake.installed

        pane.start_pull("inference", "nosuchmodel:1b")
        text = await screen_shows(pilot, "nosuchmodel:1b", "failed at", "pulling again will fail the same way")
        assert "pull model manifest: file does not exist" in text


async def test_deleting_a_model_already_gone_is_reported_plainly(tmp_path: Path) -> None:
    async with FakeOllama() as fake, ollama_console(tmp_path, fake) as (app, pilot, pane):
        fake.remove_model("mistral:7b")  # behind the console's back
        await select(pilot, pane, "mistral:7b")
        await pilot.press("d", "y")
        await wait_until(pilot, lambda: any("404" in m for _, m in notifications(app)), what="the 404")
        ((severity, message),) = [(s, m) for s, m in notifications(app) if "404" in m]
        assert severity == "warning"
        assert message.startswith("inference has no model mistral:7b to delete (404): ")
        assert "not found" in message
        await wait_until(pilot, lambda: not row_of(app, "mistral:7b"), what="the list read again")


async def test_r_reads_the_servers_again(tmp_path: Path) -> None:
    async with FakeOllama() as fake, ollama_console(tmp_path, fake) as (_, pilot, _pane):
        fake.add_model("tinyllama:1b", size=637_700_138, family="llama", parameter_size="1.1B")
        await pilot.press("r")
        await screen_shows(pilot, "tinyllama:1b", "638 MB")


# --- the tab's own rules, on the stand-in -----------------------------------------------------------


async def test_read_only_hides_and_refuses_pull_cancel_delete_unload(tmp_path: Path) -> None:
    library = StubLibrary()
    async with models_console(tmp_path, library, read_only=True) as (app, pilot, pane):
        assert isinstance(pane, ReadOnlyModelsPane)
        labels = footer_labels(app)
        assert "Refresh" in labels
        assert not {"Pull", "Delete", "Unload"} & set(labels)
        await select(pilot, pane, "llama3.1:8b")
        await pilot.press("p", "d", "u", "c")
        await pilot.pause()
        assert not isinstance(app.screen, (PullDialog, ConfirmScreen))
        assert [call[0] for call in library.calls] == ["refresh"]
        messages = {message for _, message in notifications(app)}
        for action in ("pull", "delete", "unload", "cancel"):
            assert f"Read-only mode: {action} is disabled." in messages

        await pilot.press("question_mark")
        text = await screen_shows(pilot, "Read every model server again now", "Show the selected model's details")
        assert "Pull a model" not in text and "Delete the selected model" not in text and "Unload" not in text
        await pilot.press("escape", "ctrl+p")
        await wait_until(pilot, lambda: CommandPalette.is_open(app), what="the palette")
        await pilot.press(*"llama3.1")
        await screen_shows(pilot, "Details of llama3.1:8b on inference")
        text = screen_text(app)
        assert "Delete llama3.1:8b" not in text and "Unload llama3.1:8b" not in text


async def test_help_and_palette_offer_the_model_actions(tmp_path: Path) -> None:
    library = StubLibrary()
    async with models_console(tmp_path, library) as (app, pilot, _):
        await help_shows(pilot, [
            ("p", "Pull a model onto the selected VM; retry a failed pull"),
            ("c", "Cancel the selected pull, or dismiss a finished one"),
            ("d", "Delete the selected model (asks first)"),
            ("u", "Unload the selected model from memory"),
            ("⏎", "Show the selected model's details"),
            ("r", "Read every model server again now"),
            ("4", "Show the Models tab: each VM's Ollama models"),
        ])  # fmt: skip
        await pilot.press("escape")
        unloaded = ("unload", "inference", "llama3.1:8b")
        details = ModelDetailsScreen
        for query, shown, check in (
            ("Pull a model onto inf", "Pull a model onto inference", lambda: isinstance(app.screen, PullDialog)),
            ("Unload llama3.1", "Unload llama3.1:8b on inference", lambda: unloaded in library.calls),
            ("Delete mistral", "Delete mistral:7b from inference", lambda: isinstance(app.screen, ConfirmScreen)),
            ("Details of deepseek", "Details of deepseek-coder-v2:16b", lambda: isinstance(app.screen, details)),
        ):  # fmt: skip
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: CommandPalette.is_open(app), what="the palette")
            await pilot.press(*query)
            await screen_shows(pilot, shown)
            await pilot.press("enter")
            await wait_until(pilot, check, what=shown)
            if len(app.screen_stack) > 1:  # a dialog the command opened
                await pilot.press("escape")


async def test_an_invalid_name_is_refused_before_any_request(tmp_path: Path) -> None:
    library = StubLibrary()
    async with models_console(tmp_path, library) as (app, pilot, pane):
        await pilot.press("p", *"-llama")
        verdict = app.screen.query_one("#pull-verdict")
        await wait_until(pilot, lambda: "-llama" in str(verdict.render()), what="the verdict on '-llama'")
        assert str(verdict.render()) == "✖ not a model name: the model '-llama' must start with a letter, digit or '_'"
        await pilot.press("enter")
        assert isinstance(app.screen, PullDialog), "enter on an invalid name pulls nothing"
        await pilot.press("escape")
        pane.start_pull("inference", "../../etc/passwd")
        await pilot.pause()
        assert not [call for call in library.calls if call[0] == "pull"]
        assert any(m.startswith("Not pulled: ") for _, m in notifications(app))

        await pilot.press("p", *"llama3.1:8b")
        await screen_shows(pilot, "already on inference")
        await pilot.press("enter")
        assert ("pull", "inference", "llama3.1:8b") in library.calls


HOSTILE = "\x1b]0;pwned\x07\x1b[31m[bold red]evil[/]"
HOSTILE_SHOWN = "[bold red]evil[/]"


def hostile_servers() -> tuple[ServerModels, ...]:
    inference, homelab, brain = servers()
    evil = installed(f"{HOSTILE}:7b", 1_000_000_000, f"[b]{HOSTILE}", "1B", "Q4_0", 1)
    error = f"listing models: HTTP 500: {HOSTILE} [link=http://x]here[/link]"
    return (
        replace(inference, installed=(evil, *inference.installed)),
        replace(homelab, error=error),
        replace(brain, listed=(HOSTILE,)),
    )


class HostileDetails(StubLibrary):
    async def details(self, vm: str, model: str) -> ModelDetails:
        return ModelDetails(model, HOSTILE, parameters=f"stop {HOSTILE}", template="[b]{{ .Prompt }}[/b]\x1b[2J",
                            license_head=f"{HOSTILE} licence\n\x1b]52;c;cGF3bmVk\x07line two")  # fmt: skip


async def test_names_details_and_errors_from_a_server_are_shown_inert(tmp_path: Path) -> None:
    library = HostileDetails(servers=hostile_servers())
    async with models_console(tmp_path, library, size=(120, 40)) as (_, pilot, pane):
        text = await screen_shows(pilot, f"{HOSTILE_SHOWN}:7b", f"HTTP 500: {HOSTILE_SHOWN} [link=http://x]here[/link]")
        assert f"  {HOSTILE_SHOWN}" in text  # the OpenAI server's model id
        assert not has_control_chars(text)
        evil = pane.selected
        await pilot.press("down")
        assert pane.selected != evil and pane.selected.name == f"{HOSTILE}:7b"
        await pilot.press("enter")
        text = await screen_shows(pilot, "[b]{{ .Prompt }}[/b]", f"stop {HOSTILE_SHOWN}", f"{HOSTILE_SHOWN} licence")
        assert "line two" in text and not has_control_chars(text)
        await pilot.press("escape", "d")
        text = await screen_shows(pilot, f"Delete {HOSTILE_SHOWN}:7b from inference?")
        assert not has_control_chars(text)
        await pilot.press("n", "p", "tab")
        text = await screen_shows(pilot, "Pull a model onto inference")
        assert not has_control_chars(text)
        lines = "\n".join(pane.board.lines[i].plain for i in range(len(pane.board.lines)))
        assert "\x1b" not in lines and "\x07" not in lines


async def test_the_tab_refreshes_while_it_shows_and_not_while_hidden(tmp_path: Path) -> None:
    library = StubLibrary(pulls=[("inference", running_pull())])
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        console = app.console_tabs
        pane = console.models
        pane.options = replace(pane.options, refresh_s=0.5)
        console.use_models(library)
        await pilot.pause(1.2)
        assert library.calls == [], "never shown: never read"
        await pilot.press("4")
        assert library.calls == [("refresh", None)], "read at once when shown"
        await wait_until(pilot, lambda: len(library.calls) >= 3, timeout=4, what="refreshes every refresh_s")
        assert pane._pull_timer is not None, "a running pull is redrawn between ticks"
        await pilot.press("1")
        hidden_at = len(library.calls)
        paints = Counter(pane.board.show)
        pane.board.show = paints  # type: ignore[method-assign]
        await pilot.pause(2.5)
        assert len(library.calls) == hidden_at, "no refresh while hidden"
        assert paints.calls == 0, "no drawing while hidden, pulls or not"
        await pilot.press("4")
        assert len(library.calls) == hidden_at + 1, "shown again: read at once (it was due)"
        assert paints.calls >= 1


async def test_the_console_builds_the_library_on_its_telemetry_and_a_pull_counts_as_activity(tmp_path: Path) -> None:
    """The whole way round: the demo's Ollama on inference through its SSH forward, its disk
    from `df` over SSH, homelab's OpenAI-compatible LocalAI; a pull resets the idle timer."""
    app = telemetry_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await telemetry_live(pilot)
        monitor = app.runtime.monitor
        signals: list[tuple[str, str, str]] = []
        note_activity = monitor.note_activity

        def recording(vm: str, kind: str, detail: str, at=None, **lease) -> None:  # type: ignore[no-untyped-def]
            signals.append((vm, kind, detail))
            note_activity(vm, kind, detail, at, **lease)

        monitor.note_activity = recording  # type: ignore[method-assign]
        await pilot.press("4")
        text = await screen_shows(pilot, "● deepseek-coder-v2:16b", "stays loaded", "localai (openai) · read-only")
        assert any(line.startswith("  disk ━") and "free of" in line for line in text.splitlines())
        assert any(line.startswith("  VRAM ━") and "used of" in line for line in text.splitlines())
        models(app).start_pull("inference", "phi3:mini")
        await wait_until(
            pilot, lambda: ("inference", "pull", "pulling phi3:mini") in signals, what="the pull's activity"
        )
        await pilot.press("home", "c")
        await screen_shows(pilot, "○ inference", "cancelled at")


# --- the pieces ---------------------------------------------------------------------------------


def test_where_a_loaded_model_runs_reads_as_ollama_ps_says_it() -> None:
    assert LoadedModel("a", 6_000, 6_000).processor == "100% GPU"
    assert LoadedModel("a", 6_000, 0).processor == "100% CPU"
    assert LoadedModel("a", 10_400, 5_000).processor == "52%/48% CPU/GPU"
    assert LoadedModel("a", 5_000, 6_000).processor == "unknown"


def test_keep_alive_and_ages() -> None:
    assert until_text(LOADED_LLAMA, AT) == "4m 12s"
    assert until_text(LOADED_LLAMA, AT + timedelta(minutes=5)) == "now"
    assert until_text(LOADED_DEEPSEEK, AT) == "forever"
    assert [ago(s) for s in (5, 720, 5 * 3600, 3 * 86_400, 75 * 86_400)] == [
        "now",
        "12m ago",
        "5h ago",
        "3d ago",
        "2mo ago",
    ]


def test_gpu_memory_only_from_live_figures() -> None:
    assert gpu_memory(gpu_telemetry(), "inference") == (24_564 * MIB, 12_000 * MIB)
    assert gpu_memory(gpu_telemetry(), "homelab") == (None, None)
    assert gpu_memory(None, "inference") == (None, None)
    stale = gpu_telemetry().host("inference")
    stale = replace(stale, gpus=(replace(stale.gpus[0], stale=True),))
    assert gpu_memory(TelemetrySnapshot(AT, (stale,)), "inference") == (None, None), "old figures estimate nothing"


def test_a_fit_warning_is_marked_and_coloured_as_one() -> None:
    memory = gpu_memory(gpu_telemetry(), "inference")
    fits = fit_content(fit_for(2 * GB, memory, (), "phi3:mini"))
    evicts = fit_content(fit_for(21 * GB, memory, (LOADED_LLAMA, LOADED_DEEPSEEK), "qwen2.5:32b"))
    spills = fit_content(fit_for(40 * GB, memory, (), "llama3.1:70b"))
    unknown = fit_content(fit_for(2 * GB, (None, None), (), "phi3:mini"))
    assert fits.plain.startswith("✓ fits: needs ~2.0 GB")
    assert evicts.plain.startswith("⚠ EVICTS: needs ~21.0 GB") and "unload llama3.1:8b" in evicts.plain
    assert spills.plain.startswith("⚠ SPILLS: needs ~40.0 GB")
    assert unknown.plain.startswith("? needs ~2.0 GB")
    assert [str(span.style) for span in evicts.spans][:1] == ["$warning bold"]
    assert [str(span.style) for span in spills.spans][:1] == ["$error bold"]


def test_a_loaded_models_figures_are_columns_when_there_is_room() -> None:
    model = INFERENCE_MODELS[1]
    narrow = model_row(model, LOADED_LLAMA, AT, Layout.of(79), stale=False)
    wide = model_row(model, LOADED_LLAMA, AT, Layout.of(WIDE_WIDTH), stale=False)
    assert [line.cell_length <= 79 for line in narrow] == [True, True]
    assert narrow[1].plain.strip() == "6.2 GB in VRAM · 100% GPU · context 8192 · unloads in 4m 12s"
    assert len(wide) == 1 and wide[0].cell_length <= WIDE_WIDTH
    assert wide[0].plain.split()[-7:] == ["7d", "ago", "6.2", "GB", "100%", "GPU", "8192"] or "4m 12s" in wide[0].plain
    assert wide[0].plain.rstrip().endswith("8192     4m 12s")
    assert column_titles(Layout.of(WIDE_WIDTH)).plain.rstrip().endswith("context unloads in")


def test_a_pull_before_its_size_is_known_says_what_the_server_says() -> None:
    starting = PullStatus("qwen2.5:7b", PullState.RUNNING, "pulling manifest", (), 0.4, None, 0.35)
    lines = pull_lines("inference", starting, 79, "$panel")
    assert [line.plain.rstrip() for line in lines][1] == "    pulling manifest"
    assert "size unknown yet" in lines[0].plain
    done = replace(running_pull(), state=PullState.SUCCEEDED, elapsed_s=98.0)
    head, text = (line.plain.rstrip() for line in pull_lines("inference", done, 79, "$panel"))
    assert (head, text) == ("✓ inference    qwen2.5:7b", "    pulled 4.7 GB in 1m 38s ($0.01 of VM time)"), "never cut"
    done = replace(done, model="phi3:mini", hourly_usd=0.0)
    (line,) = pull_lines("inference", done, 79, "$panel")
    assert line.plain.rstrip() == "✓ inference    phi3:mini                pulled 4.7 GB in 1m 38s"


class LinesApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SelectableLines(id="lines")


def numbered(count: int, first: int = 0) -> tuple[list[Content], list[Item]]:
    lines = [Content(f"line {first + i}") for i in range(count)]
    return lines, [Item(f"key {first + i}", i, i + 1) for i in range(count)]


async def test_the_selection_follows_its_item_and_only_changed_lines_repaint() -> None:
    app = LinesApp()
    async with app.run_test(size=(40, 10)) as pilot:
        board = app.query_one(SelectableLines)
        board.focus()
        board.show(*numbered(30))
        await pilot.pause()
        await pilot.press("down", "down")
        assert board.selected == "key 2"
        lines, items = numbered(30, first=-3)  # three new lines above: the selection stays on "key 2"
        board.show(lines, items)
        assert board.selected == "key 2"
        await pilot.pause()
        renders = board.line_renders
        lines[7] = Content("line 4, changed")
        board.show(lines, items)
        await pilot.pause()
        assert board.line_renders - renders == 1, "one line changed: one line drawn"
        await pilot.press("end")
        assert board.selected == "key 26" and board.scroll_offset.y > 0
        await pilot.press("home")
        assert board.selected == "key -3" and board.scroll_offset.y == 0
        await pilot.press("pagedown")
        assert board.selected == "key 6"


async def test_without_telemetry_the_tab_says_why_it_has_no_library(tmp_path: Path) -> None:
    def broken(_build):  # type: ignore[no-untyped-def]
        raise RuntimeError("asyncssh is missing \x1b[31m[b]here[/b]")

    app = telemetry_app(tmp_path, build=broken)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await pilot.press("4")
        text = await screen_shows(pilot, "✖ the model library is off: asyncssh is missing [b]here[/b]")
        assert "\x1b" not in text and app.screen.focused is None
        await pilot.press("p", "r")  # nothing focused in the tab: its keys are not active
        await pilot.pause()
        assert not isinstance(app.screen, PullDialog)

"""GPU gauges, the GPU view and the service health board, on hand-made snapshots.

Every snapshot here is built by hand with fixed datetimes and deterministic histories,
so the SVGs (snapshots/test_ui_gpu_widgets/, 80x24) are the same on every run. The
small apps below mount one widget each, the way a pane would, in our own themes.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from rich.style import Style as RichStyle
from textual.app import App, ComposeResult
from textual.content import Content
from textual.style import Style as VisualStyle

from aiconsole.domain.gpu import GpuSample
from aiconsole.domain.gpu_levels import Level
from aiconsole.domain.health import HealthState, ServiceHealth
from aiconsole.domain.telemetry import FeedState, GpuHistory, GpuView, HostOutline, HostTelemetry, TelemetrySnapshot
from aiconsole.ui.themes import bundled_theme_dirs, load_themes
from aiconsole.ui.widgets.gpu_gauges import (
    PANE_WIDTH,
    POWER_WIDTH,
    GpuGauges,
    gauge_content,
    host_gauges_content,
    host_status_content,
    key_fingerprint,
    power_text,
    short_gpu_name,
    sparkline,
)
from aiconsole.ui.widgets.gpu_table import (
    COMPACT_WIDTH,
    WIDE_WIDTH,
    GpuTable,
    StyleCache,
    fit_pieces,
    gpu_row_content,
    header_content,
    pieces_segments,
)
from aiconsole.ui.widgets.health_board import HealthBoard, board_lines
from ui_helpers import has_control_chars, widget_lines

SIZE = (80, 24)
AT = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
FINGERPRINT = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
REFUSED_MESSAGE = (
    "host key for 203.0.113.7 is not in /home/op/.ssh/known_hosts. The server offers "
    f"ssh-ed25519 {FINGERPRINT}: check the fingerprint (e.g. on the VM's console: "
    "ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run `ssh ubuntu@203.0.113.7` once "
    "to add it to known_hosts, or `ssh-keyscan 203.0.113.7 >> /home/op/.ssh/known_hosts`, and retry"
)
# Escape sequences (OSC title, CSI colour, clear screen) and markup, as a server could send them.
HOSTILE_ERROR = "\x1b]0;pwned\x07\x1b[31m[bold red]evil[/] 503 from \x1b[2Jproxy [link=http://x]here[/link]"
HOSTILE_SHOWN = "[bold red]evil[/] 503 from proxy [link=http://x]here[/link]"

MIB_24G, MIB_80G = 24564.0, 81559.0


# --- hand-made telemetry ------------------------------------------------------------------


def history(seed: int, points: int = 30) -> GpuHistory:
    """A deterministic wave per GPU; one unknown point, as after an `[N/A]`."""
    util = tuple(50 + 45 * math.sin((i + seed) / 3) for i in range(points))
    temp = tuple(55 + 20 * math.sin((i + seed) / 5) for i in range(points))
    mem = tuple(60 + 10 * math.sin((i + seed) / 7) for i in range(points))
    gap = points - 5
    return GpuHistory(util_pct=util[:gap] + (None,) + util[gap + 1 :], temp_c=temp, mem_pct=mem)


def gpu(
    index: int = 0,
    name: str = "NVIDIA GeForce RTX 4090",
    *,
    temp: float | None = 62,
    used: float | None = 18_636,
    total: float | None = MIB_24G,
    util: float | None = 87,
    power: float | None = 310.4,
    limit: float | None = 450,
    temp_level: Level = Level.OK,
    mem_level: Level = Level.OK,
    stale: bool = False,
    age: float = 0.4,
    seed: int = 0,
) -> GpuView:
    sample = GpuSample(index, f"GPU-{seed:04d}-{index}", name, temp, used, total, util, power, limit, AT)
    return GpuView(sample, temp_level, mem_level, stale, age, history(seed + index))


def levels_host() -> HostTelemetry:
    """GPU0 normal, GPU1 warning, GPU2 critical, GPU3 stale (last seen hot)."""
    return HostTelemetry(
        "inference",
        FeedState.LIVE,
        gpus=(
            gpu(0),
            gpu(1, temp=78, used=20_480, util=99, power=441, temp_level=Level.WARNING, mem_level=Level.WARNING),
            gpu(2, temp=91, used=24_010, util=100, power=449, temp_level=Level.CRITICAL, mem_level=Level.CRITICAL),
            gpu(3, temp=77, used=9_000, util=3, power=71, temp_level=Level.WARNING, stale=True, age=12.3),
        ),
        updated_at=AT,
    )


def unknowns_host() -> HostTelemetry:
    """nvidia-smi said [N/A] for most fields of an H100; and a name too long for its cell."""
    return HostTelemetry(
        "trainer",
        FeedState.LIVE,
        gpus=(
            gpu(0, "NVIDIA H100 80GB HBM3", temp=None, used=None, total=MIB_80G, util=None, power=None, limit=700),
            gpu(1, "NVIDIA RTX 6000 Ada Generation", temp=45, used=512, total=49_140, util=0, power=None, limit=None),
        ),
        updated_at=AT,
    )


def state_hosts() -> tuple[HostTelemetry, ...]:
    return (
        HostTelemetry("booting", FeedState.CONNECTING, "opening SSH to ubuntu@203.0.113.9:22"),
        HostTelemetry("cpu-box", FeedState.NO_GPU, "no NVIDIA GPU or driver (nvidia-smi: command not found)"),
        HostTelemetry("flaky", FeedState.ERROR, "connection lost: Connection reset by peer; retrying in 8s"),
        HostTelemetry("rebuilt", FeedState.REFUSED, REFUSED_MESSAGE),
        HostTelemetry("training", FeedState.OFF, "VM is stopped"),
    )


def drawing_hosts() -> tuple[HostTelemetry, ...]:
    """Rows of every kind for the fast row path: levels, stale, unknowns, and rows wider than
    the table (a 3-digit index and a 1200 W limit; a host name of wide characters)."""
    overflow = (
        gpu(123, "NVIDIA B200", temp=None, power=1000, limit=1200, mem_level=Level.CRITICAL),
        gpu(7, "NVIDIA B200", stale=True, age=4000.0, temp_level=Level.CRITICAL),
    )
    return (
        levels_host(),
        unknowns_host(),
        HostTelemetry("b200-pod", FeedState.LIVE, gpus=overflow, updated_at=AT),
        HostTelemetry("東京-推論サーバー-01", FeedState.LIVE, gpus=(gpu(0), gpu(1, stale=True)), updated_at=AT),
    )


def services_host(name: str, *services: ServiceHealth) -> HostTelemetry:
    return HostTelemetry(name, FeedState.LIVE, services=services)


def service(name: str, kind: str, state: HealthState, latency: float | None = None, **more) -> ServiceHealth:
    return ServiceHealth(name, kind, state, latency, checked_at=AT, **more)


def health_hosts() -> tuple[HostTelemetry, ...]:
    return (
        services_host(
            "inference",
            service("ollama", "ollama", HealthState.UP, 12.4, version="0.12.6"),
            service("open-webui", "http", HealthState.UP, 48.0),
            service("vllm", "openai", HealthState.STARTING, 503.2, error="HTTP 503: loading model"),
        ),
        services_host(
            "trainer",
            service("mlflow", "mlflow", HealthState.DOWN, error="connection refused (127.0.0.1:41871)"),
            service("localai", "openai", HealthState.DOWN, 2.0, error=HOSTILE_ERROR),
            service("tensorboard-with-a-long-name", "http", HealthState.UNKNOWN),
        ),
        services_host(
            "homelab",
            service(
                "ollama",
                "ollama",
                HealthState.DOWN,
                10_000.0,
                error="timed out after 10s waiting for http://10.0.0.5:11434/api/version",
            ),
        ),
        HostTelemetry("cpu-box", FeedState.NO_GPU),  # no services: not listed
    )


def fleet_snapshot(hosts: int, gpus_per_host: int, *, tick: int = 0) -> TelemetrySnapshot:
    """`hosts` x `gpus_per_host` RTX 4090s; every value moves with `tick`."""
    made = []
    for h in range(hosts):
        views = []
        for i in range(gpus_per_host):
            seed = h * gpus_per_host + i + tick
            temp = 40 + (seed * 7) % 50
            level = Level.CRITICAL if temp >= 85 else Level.WARNING if temp >= 75 else Level.OK
            used = float(seed * 1301 % 24_000)
            mem = Level.CRITICAL if used >= 23_300 else Level.WARNING if used >= 19_650 else Level.OK
            views.append(
                gpu(i, temp=temp, used=used, util=float(seed * 11 % 101), power=100.0 + seed % 300,
                    temp_level=level, mem_level=mem, seed=seed)
            )  # fmt: skip
        made.append(HostTelemetry(f"gpu-{h:03d}", FeedState.LIVE, gpus=tuple(views), updated_at=AT))
    return TelemetrySnapshot(AT, tuple(made))


def table_snapshot() -> TelemetrySnapshot:
    trainer = tuple(
        gpu(
            i,
            "NVIDIA H100 80GB HBM3",
            temp=(58, 66, 71, 76, 83, 88, 64, 60)[i],
            used=(62_000, 70_100, 79_000, 40_000, 66_000, 78_500, 12_000, 30_000)[i],
            total=MIB_80G,
            util=(97, 99, 100, 88, 92, 100, 12, 0)[i],
            power=(640, 655, 690, 520, 610, 699, 120, 70)[i],
            limit=700,
            temp_level=(Level.OK, Level.OK, Level.OK, Level.WARNING, Level.WARNING, Level.CRITICAL, Level.OK, Level.OK)[
                i
            ],
            mem_level=(
                Level.OK,
                Level.WARNING,
                Level.CRITICAL,
                Level.OK,
                Level.WARNING,
                Level.CRITICAL,
                Level.OK,
                Level.OK,
            )[i],
            stale=i == 7,
            age=75.0 if i == 7 else 0.5,
            seed=10,
        )
        for i in range(8)
    )
    return TelemetrySnapshot(
        AT,
        (
            HostTelemetry(
                "inference",
                FeedState.LIVE,
                gpus=(gpu(0), gpu(1, temp=40, used=600, util=0, power=24, seed=3)),
                updated_at=AT,
            ),
            HostTelemetry("trainer-8xh100", FeedState.LIVE, gpus=trainer, updated_at=AT),
            HostTelemetry(
                "local", FeedState.LIVE, gpus=(gpu(0, "NVIDIA GeForce RTX 3090 Ti", temp=51, seed=7),), updated_at=AT
            ),
            *state_hosts()[:4],
        ),
    )


# --- small apps ---------------------------------------------------------------------------


class ThemedApp(App[None]):
    """Our themes, registered from themes/ the way the console does."""

    CSS = """
    Screen { background: $background; }
    .pane { border: round $panel-lighten-2; border-title-color: $text; padding: 0 1; }
    .pane:light { border: round $panel-darken-2; }
    """

    def __init__(self, theme: str = "aiconsole-dark") -> None:
        super().__init__()
        themes, problems = load_themes(bundled_theme_dirs())
        assert not problems
        for each in themes:
            self.register_theme(each)
        self.theme = theme


class GaugesApp(ThemedApp):
    """One bordered pane per host, as on the Fleet tab."""

    def __init__(self, hosts: tuple[HostTelemetry, ...], theme: str = "aiconsole-dark") -> None:
        super().__init__(theme)
        self.hosts = hosts

    def compose(self) -> ComposeResult:
        for host in self.hosts:
            gauges = GpuGauges(host, classes="pane")
            gauges.border_title = Content(host.host)
            yield gauges


class TableApp(ThemedApp):
    def __init__(self, snapshot: TelemetrySnapshot, table: GpuTable | None = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.table = table or GpuTable(id="gpus")

    def compose(self) -> ComposeResult:
        yield self.table

    def on_mount(self) -> None:
        self.table.update_snapshot(self.snapshot)
        self.table.focus()


class BoardApp(ThemedApp):
    def compose(self) -> ComposeResult:
        board = HealthBoard(id="health")
        board.update_snapshot(TelemetrySnapshot(AT, health_hosts()))
        yield board


class CountingTable(GpuTable):
    """Counts the lines Textual asks for: with a line-API view, only those on screen."""

    lines_drawn = 0

    def render_line(self, y: int):
        self.lines_drawn += 1
        return super().render_line(y)


# --- snapshots ----------------------------------------------------------------------------


def test_gauges_normal_warning_critical_stale(snap_compare) -> None:
    """inference: GPU0 normal, GPU1 warning (!), GPU2 critical (! reversed), GPU3 stale 12s; trainer: unknowns."""
    assert snap_compare(GaugesApp((levels_host(), unknowns_host())), terminal_size=SIZE)


def test_gauges_light_theme(snap_compare) -> None:
    assert snap_compare(GaugesApp((levels_host(), unknowns_host()), "aiconsole-light"), terminal_size=SIZE)


def test_host_states_instead_of_gauges(snap_compare) -> None:
    """Connecting, no GPU, error, a refused host key (fingerprint and how to accept), off."""
    assert snap_compare(GaugesApp(state_hosts()), terminal_size=SIZE)


def test_gpu_table_few_hosts(snap_compare) -> None:
    """Three hosts with GPUs (levels, a stale one) and four without (their state instead)."""
    assert snap_compare(TableApp(table_snapshot()), terminal_size=SIZE)


def test_gpu_table_800_gpus_scrolled(snap_compare) -> None:
    async def page_down_twice(pilot) -> None:
        await pilot.press("pagedown", "pagedown")
        await pilot.pause()

    assert snap_compare(TableApp(fleet_snapshot(100, 8)), terminal_size=SIZE, run_before=page_down_twice)


def test_health_board(snap_compare) -> None:
    """Up, starting, down (error below when long), unknown; hostile error text shown inert."""
    assert snap_compare(BoardApp(), terminal_size=SIZE)


# --- what the pictures rely on ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("NVIDIA GeForce RTX 4090", "4090"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla T4", "T4"),
        ("NVIDIA RTX A6000", "A6000"),
        ("NVIDIA GeForce RTX 3090 Ti", "3090 Ti"),
        ("NVIDIA RTX 6000 Ada Generation", "6000 Ada"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("", "—"),
        ("\x1b[31mNVIDIA [b]X[/b]", "[b]X[/b]"),
    ],
)
def test_short_gpu_name(name: str, short: str) -> None:
    assert short_gpu_name(name) == short


def test_sparkline_scales_pads_and_shows_unknown_as_space() -> None:
    assert sparkline([0, 50, None, 100], 6, 0, 100) == "  ▁▅ █"
    assert sparkline(list(range(100)), 3, 0, 100) == "███"
    assert sparkline([-20, 500], 2, 0, 100) == "▁█"  # clamped, not an IndexError
    assert sparkline([1.0], 0, 0, 100) == ""


def test_gauge_fits_a_pane_and_marks_levels() -> None:
    host = levels_host()
    lines = [gauge_content(view).plain for view in host.gpus + unknowns_host().gpus]
    assert all(len(line) <= PANE_WIDTH for line in lines)
    normal, warning, critical, stale, unknown, _ = lines
    assert "62°C " in normal and "76% " in normal and "310/450W" in normal and "!" not in normal
    assert "78°C!" in warning and "83%!" in warning
    assert "91°C!" in critical and "98%!" in critical
    assert stale.endswith("stale 12s") and "W" not in stale  # no power or util history shown as fresh
    assert "—" in unknown and "—/700W" in unknown and "0%" not in unknown
    critical_spans = {(critical[span.start : span.end], str(span.style)) for span in gauge_content(host.gpus[2]).spans}
    assert ("91°C!", "$error bold reverse") in critical_spans


@pytest.mark.parametrize("width", [74, 66, 58, 40])
def test_narrow_gauges_keep_the_stale_mark(width: int) -> None:
    stale = gauge_content(levels_host().gpus[3], width)
    assert stale.cell_length <= width and stale.plain.endswith("stale 12s")
    fresh = gauge_content(levels_host().gpus[0], width)
    assert fresh.cell_length <= width and fresh.plain.endswith("310/450W")


def test_refused_host_shows_fingerprint_and_how_to_accept() -> None:
    refused = state_hosts()[3]
    assert key_fingerprint(refused.message) == FINGERPRINT
    lines = host_status_content(refused).plain.split("\n")
    assert lines[0] == f"✖ host key refused  {FINGERPRINT}"
    assert all(len(line) <= PANE_WIDTH for line in lines) and len(lines) <= 8 and not lines[-1].endswith("…")
    text = " ".join(lines)
    assert "ssh ubuntu@203.0.113.7" in text and "ssh-keyscan 203.0.113.7 >> /home/op/.ssh/known_hosts" in text
    one_line = host_status_content(refused, width=62, max_lines=1).plain  # as in the GPU table
    assert "\n" not in one_line and len(one_line) <= 62 and one_line.startswith(f"✖ refused  {FINGERPRINT}")


def test_host_states_read_without_gauges() -> None:
    texts = {host.host: host_gauges_content(host).plain for host in state_hosts()}
    assert texts["booting"].startswith("◐ connecting…")
    assert texts["cpu-box"].startswith("– no GPU")
    assert (
        texts["flaky"] == "✖ telemetry error\nconnection lost: Connection reset by peer; retrying in 8s"
    )  # 76 > 74: wrapped
    assert texts["training"].startswith("○ off: not connected")


def test_status_message_is_sanitised_and_not_markup() -> None:
    host = HostTelemetry("x", FeedState.ERROR, HOSTILE_ERROR)
    shown = host_status_content(host, width=200).plain
    assert not has_control_chars(shown) and HOSTILE_SHOWN in shown


def test_table_row_lines_up_with_its_header() -> None:
    header = header_content(wide=True).plain
    row = gpu_row_content("inference", gpu(0), first=True, wide=True).plain
    stale = gpu_row_content("inference", levels_host().gpus[3], first=False, wide=True).plain
    assert len(header) == len(row) == len(stale) == WIDE_WIDTH <= 78  # 80 columns less the scrollbar
    assert header.index("temp") + 4 == row.index("°C") + 2 and header.index("used") + 4 == row.index("%") + 1
    assert header.index("power") + 5 == row.index("W") + 1
    assert stale.endswith("stale 12s")


@pytest.mark.parametrize(
    ("power", "limit", "shown"),
    [
        (310.4, 450, "310/450W"),
        (1000, 1200, "1.0/1.2k"),  # a B200: "1000/1200W" would not fit its 8 columns
        (950, 1200, "0.9/1.2k"),
        (None, 1200, "—/1200W"),
        (1000, 10000, "1000W"),  # even kilowatts too wide: the draw alone
        (None, 450, "—/450W"),
        (1000, None, "1000W"),
        (None, None, "—"),
    ],
)
def test_power_text_fits_its_column(power, limit, shown) -> None:
    text = power_text(gpu(0, power=power, limit=limit))
    assert text == shown and len(text) <= POWER_WIDTH


async def test_gpu_table_draws_only_visible_rows_of_800() -> None:
    table = CountingTable(id="gpus")
    app = TableApp(fleet_snapshot(100, 8), table)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        height = table.size.height
        assert table.row_count == 800 and table.virtual_size.height == 801
        assert 0 < table.row_renders <= height - 1
        assert table.lines_drawn <= 2 * height  # a first frame may be drawn twice (layout, then paint)

        # A tick where every GPU changed: only the rows on screen are rendered again.
        renders, table.lines_drawn = table.row_renders, 0
        table.update_snapshot(fleet_snapshot(100, 8, tick=1))
        await pilot.pause()
        assert table.row_renders - renders == height - 1
        assert table.lines_drawn == height - 1  # the header line was not dirty

        # The same snapshot again (equal views, new objects): nothing is drawn.
        renders, table.lines_drawn = table.row_renders, 0
        table.update_snapshot(fleet_snapshot(100, 8, tick=1))
        await pilot.pause()
        assert table.row_renders == renders and table.lines_drawn == 0

        # One GPU far below the screen changes: nothing is drawn; one on screen: one line.
        snapshot = fleet_snapshot(100, 8, tick=1)
        for host_index, expected in ((90, 0), (1, 1)):
            hosts = list(snapshot.hosts)
            host = hosts[host_index]
            hosts[host_index] = replace(host, gpus=(replace(host.gpus[0], age_s=99.0), *host.gpus[1:]))
            snapshot = TelemetrySnapshot(snapshot.at, tuple(hosts))
            renders, table.lines_drawn = table.row_renders, 0
            table.update_snapshot(snapshot)
            await pilot.pause()
            assert (table.row_renders - renders, table.lines_drawn) == (expected, expected)

        # Scrolling a page renders the rows that come into view, not the 800.
        renders = table.row_renders
        await pilot.press("pagedown")
        await pilot.pause()
        assert table.row_renders - renders == height - 1
        assert table.scroll_offset.y == height - 1  # a page is the rows under the header


def lazy_fleet(tick: int, built: list[str]) -> TelemetrySnapshot:
    """`fleet_snapshot(100, 8)` as the hub hands it out: outlines, hosts built when read."""
    hosts = {host.host: host for host in fleet_snapshot(100, 8, tick=tick).hosts}
    outlines = [HostOutline.of(host) for host in hosts.values()]
    return TelemetrySnapshot.lazy(AT, outlines, lambda name: built.append(name) or hosts[name])


async def test_gpu_table_builds_only_the_hosts_on_screen() -> None:
    built: list[str] = []
    app = TableApp(lazy_fleet(0, built))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.table
        on_screen = math.ceil((table.size.height - 1) / 8)  # 8 rows a host
        assert table.row_count == 800 and sorted(set(built)) == [f"gpu-{h:03d}" for h in range(on_screen)]
        assert len(built) == on_screen, "each host built once per snapshot"
        lines = widget_lines(table)
        built.clear()
        table.update_snapshot(lazy_fleet(1, built))
        await pilot.pause()
        assert len(built) == on_screen and widget_lines(table) != lines  # new values drawn, 3 hosts built
        built.clear()
        await pilot.press("end")
        await pilot.pause()
        assert "gpu-099" in widget_lines(table)[-1] and "gpu-099" in built and len(built) <= on_screen + 1


async def test_a_gpu_gone_since_the_outline_is_a_blank_row_not_an_old_one() -> None:
    # Read lazily, a host can have lost a GPU since its outline was taken: that row is blank
    # until the next tick brings new rows, never the GPU's old values.
    now_host = HostTelemetry("inference", FeedState.LIVE, gpus=(gpu(0),), updated_at=AT)
    outline = replace(HostOutline.of(now_host), gpu_indices=(0, 1))
    app = TableApp(TelemetrySnapshot.lazy(AT, [outline], lambda name: now_host))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = widget_lines(app.table)
        assert app.table.row_count == 2 and lines[1].startswith("inference") and lines[2].strip() == ""


async def test_gpu_table_follows_hosts_coming_and_going() -> None:
    app = TableApp(table_snapshot())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.table
        assert table.row_count == 2 + 8 + 1 + 4
        table.update_snapshot(TelemetrySnapshot(AT, table_snapshot().hosts[:1]))
        await pilot.pause()
        lines = widget_lines(table)
        assert table.row_count == 2 and lines[0].startswith("host") and lines[1].startswith("inference")
        assert lines[3].strip() == ""
        table.update_snapshot(TelemetrySnapshot(AT))
        await pilot.pause()
        assert "No GPU telemetry yet." in widget_lines(table)[1]


async def test_gpu_table_theme_change_repaints_with_new_colours() -> None:
    app = TableApp(table_snapshot())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dark = app.table.render_line(2)
        app.theme = "aiconsole-light"
        await pilot.pause()
        light = app.table.render_line(2)
        assert dark.text == light.text and list(dark) != list(light)


@pytest.mark.parametrize(("size", "width"), [(SIZE, WIDE_WIDTH), ((72, 24), COMPACT_WIDTH)])
async def test_gpu_table_draws_rows_as_their_content_renders(size: tuple[int, int], width: int) -> None:
    """The table draws a GPU row from pieces, not Content: segment for segment, style for
    style, it must be what the row's Content renders, in both themes (style cache cleared)."""
    app = TableApp(TelemetrySnapshot(AT, drawing_hosts()))
    async with app.run_test(size=size) as pilot:
        for theme in ("aiconsole-dark", "aiconsole-light"):
            app.theme = theme
            await pilot.pause()
            table = app.table
            for row in table._rows:
                view = table._data(row)
                assert isinstance(view, GpuView)
                content = gpu_row_content(row.host, view, first=row.first, wide=width == WIDE_WIDTH)
                expected = content.truncate(width, pad=True).render_segments(table.visual_style)
                strip = table._row_strip(row)
                assert list(strip) == expected and strip.cell_length == width


@pytest.mark.parametrize("width", range(1, 9))
def test_fit_pieces_pads_and_cuts_as_content_does(width: int) -> None:
    """Cut across a wide character (a space, as in Content), an empty styled piece, a pad."""
    pieces = [("ab", "bold"), ("", "italic"), ("東", ""), ("c", ""), ("d", "underline")]
    styles = StyleCache(VisualStyle.null)
    expected = Content.assemble(*pieces).truncate(width, pad=True).render_segments()
    assert pieces_segments(fit_pieces(pieces, width), styles) == expected
    assert styles["bold"] == RichStyle(bold=True)


def test_health_board_lines_fit_80_columns() -> None:
    lines = [line.plain for line in board_lines(health_hosts(), 78)]
    assert all(len(line) <= 78 for line in lines)
    assert lines[0].startswith("inference  ● 2 up  ◐ 1 starting")
    assert any("● ollama" in line and "12 ms" in line and "v0.12.6" in line for line in lines)
    assert any("◐ vllm" in line and "starting" in line and "loading model" in line for line in lines)
    assert any("? tensorboard-w…" in line and "not checked yet" in line for line in lines)
    assert not any(line.startswith("cpu-box") for line in lines)


async def test_health_board_shows_hostile_error_inert() -> None:
    app = BoardApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = "\n".join(widget_lines(app.query_one(HealthBoard)))
        svg = app.export_screenshot()
    assert HOSTILE_SHOWN in text and not has_control_chars(text)
    assert "\x1b" not in svg and "pwned" not in svg
    assert "[bold&#160;red]evil[/]" in svg.replace(" ", "&#160;")


async def test_health_board_repaints_only_on_service_changes() -> None:
    app = BoardApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        board = app.query_one(HealthBoard)
        shown = board._shown
        gpus_only = tuple(replace(host, gpus=(gpu(0),)) for host in health_hosts())
        board.show(gpus_only)
        assert board._shown is shown  # GPU samples alone do not repaint the board
        healed = replace(
            health_hosts()[2], services=(service("ollama", "ollama", HealthState.UP, 9.0, version="0.12.6"),)
        )
        board.show((*health_hosts()[:2], healed))
        await pilot.pause()
        assert "homelab  ● 1 up" in "\n".join(widget_lines(board))


async def test_gauges_widget_follows_its_host() -> None:
    app = GaugesApp((state_hosts()[0],))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        gauges = app.query_one(GpuGauges)
        assert "connecting" in "\n".join(widget_lines(gauges))
        gauges.show(levels_host())
        await pilot.pause()
        lines = widget_lines(gauges)
        assert len(lines) == 4 + 2 and "GPU3" in lines[4] and "stale 12s" in lines[4]


async def test_gpu_table_narrower_than_80_drops_the_temperature_history() -> None:
    app = TableApp(table_snapshot())
    async with app.run_test(size=(72, 24)) as pilot:
        await pilot.pause()
        lines = widget_lines(app.table)
        assert lines[0].split() == ["host", "#", "GPU", "temp", "VRAM", "used", "util", "history", "power"]
        assert "62°C " in lines[1] and lines[1].rstrip().endswith("310/450W")
        assert app.table.virtual_size.width <= app.table.size.width

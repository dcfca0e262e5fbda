"""The console side of benchmarks/chat.py: a Textual app with a `ChatTranscript`, in a real terminal.

    python benchmarks/_chat_ui.py --url URL --model M --plan JSON --out RESULT.json   (in a pty)

Why a pty and not `run_test()`: a headless app composes its frames but never turns them into
terminal output (Textual skips `render_segments` and the driver write), which is a good part
of a frame's cost. Here the app runs with its real Linux driver on a pseudo-terminal that
chat.py reads and discards, on the console's own event loop (services/event_loop.py).

`build_app(url, model)` is the console's Chat tab itself (`ChatPane` and its footer) with the
real `ChatService` and a chat history in a temporary file: `ask(prompt)` sends as the prompt
does (`ChatPane.send`) and returns when the reply has ended, so the reader, the live status
line, the history writes and the transcript's painting are all measured.

What is recorded, per reply (see _chat_common for the figures made of it):
- arrivals: when each piece reached the reader (a wrapper around `transcript.push`);
- paints: CPU time (this thread) of each `transcript.paint()` that did work, once the reply
  fills the screen (so that a short reply is not measured on a half-empty screen);
- frames: for each screen update (`Screen._on_timer_update`: layout, compositor, the
  terminal sequence built and handed to the driver's writer thread), its CPU time, the moment
  the driver's `write` was called and the transcript's `painted_pieces` at that moment: that
  frame shows pieces up to there. Lag = that moment minus the newest shown piece's arrival.
- the process's CPU (getrusage: all threads) from the request to the last piece.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _chat_common import (
    WARM_UP,
    Scenario,
    configure,
    cpu_s,
    lag_figures,
    plan_from_json,
    reader_figures,
    reply_text,
    run_on_loop,
    send_times,
)


def build_app(url: str, model: str):
    """The console's Chat tab (`ChatPane`) with its footer, sending through the real
    `ChatService` to the bench server, its chat history in a temporary SQLite file."""
    import tempfile

    from textual.app import App, ComposeResult
    from textual.widgets import Footer

    from aiconsole.services.chat_history import ChatHistory
    from aiconsole.services.chat_service import ChatService, ChatTarget
    from aiconsole.services.endpoints import Endpoints
    from aiconsole.ui.chat_pane import ChatPane, ChatPaneOptions
    from aiconsole.ui.widgets.chat_transcript import ChatTranscript

    class ChatBenchApp(App):
        def compose(self) -> ComposeResult:
            yield ChatPane(ChatPaneOptions(model=model), id="chat")
            yield Footer()

        def on_mount(self) -> None:
            endpoints = Endpoints()
            endpoints.add("bench", "ollama", url)
            service = ChatService([ChatTarget("bench", "ollama", "ollama", hourly_usd=0.35)], endpoints)
            self.folder = tempfile.TemporaryDirectory(prefix="chat-bench-")
            history = ChatHistory.open(Path(self.folder.name) / "chats.sqlite3")
            self.pane.use_service(service, history)

        @property
        def pane(self) -> ChatPane:
            return self.query_one(ChatPane)

        @property
        def transcript(self) -> ChatTranscript:
            return self.pane.transcript

        async def ask(self, prompt: str) -> None:
            await self.pane.send(prompt).wait()

    return ChatBenchApp()


class Recorder:
    """Arrivals, paints and frames of the reply being measured (hooks installed once)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.paints: list[float] = []
        self.frames: list[tuple[float, int]] = []
        self.frame_cpu: list[float] = []
        self.written = 0

    def reset(self) -> None:
        transcript = getattr(self, "transcript", None)
        self.__init__()
        self.transcript = transcript

    def screen_full(self) -> bool:
        """Paint and frame costs are noted once the reply fills the screen: before, a frame
        draws a half-empty screen, and a short reply would look cheaper than a long one."""
        transcript = getattr(self, "transcript", None)
        return transcript is not None and transcript.line_count > transcript.size.height

    def install_frame_hook(self) -> None:
        """Before the app starts: its screen's update timer binds `_on_timer_update` when created."""
        from textual.screen import Screen

        update, recorder = Screen._on_timer_update, self

        def timed_update(screen) -> None:
            started = time.thread_time()
            update(screen)
            if recorder.screen_full():
                recorder.frame_cpu.append(time.thread_time() - started)

        Screen._on_timer_update = timed_update

    def install(self, app) -> None:
        """Once the app runs: the reader's push, the transcript's paint, the driver's write."""
        transcript, recorder = app.transcript, self
        self.transcript = transcript
        push, paint, write = transcript.push, transcript.paint, app._driver.write

        def timed_push(piece: str) -> None:
            recorder.arrivals.append(time.monotonic())
            push(piece)

        def timed_paint() -> None:
            paints, started = transcript.paints, time.thread_time()
            paint()
            if transcript.paints != paints and recorder.screen_full():
                recorder.paints.append(time.thread_time() - started)

        def timed_write(data: str) -> None:
            if recorder.arrivals:  # before this reply's first piece, `painted_pieces` is the last reply's
                recorder.frames.append((time.monotonic(), transcript.painted_pieces))
            recorder.written += len(data)
            write(data)

        transcript.push, transcript.paint, app._driver.write = timed_push, timed_paint, timed_write

    def cost(self) -> dict:
        """CPU ms of a paint that did work, of a frame, and of one screen update (one of each)."""
        import statistics

        paint = statistics.median(self.paints) * 1e3 if self.paints else float("nan")
        frame = statistics.median(self.frame_cpu) * 1e3 if self.frame_cpu else float("nan")
        return {"paint_ms": paint, "frame_ms": frame, "update_ms": paint + frame, "paints": len(self.paints)}


async def run_plan(app, url: str, scenarios: list[Scenario], recorder: Recorder) -> list[dict]:
    results = []
    transcript = app.transcript
    history = reply_text(600)
    await asyncio.to_thread(configure, url, WARM_UP)  # imports and lexers loaded before anything is measured
    await app.ask("hi")
    for scenario in scenarios:
        transcript.clear()
        for turn in range(scenario.history):
            transcript.add_turn("user", f"question {turn}")
            transcript.add_turn("assistant", history, header="earlier reply", footer="600 tokens")
        while transcript.pending_blocks:  # the history rendered before the window
            await asyncio.sleep(0.05)
        await asyncio.to_thread(configure, url, scenario)
        recorder.reset()
        started, cpu = time.monotonic(), cpu_s()
        await app.ask("hi")
        cpu, ended = cpu_s() - cpu, time.monotonic()
        waiting = transcript.pending_blocks
        while transcript.pending_blocks and time.monotonic() < ended + 60:
            await asyncio.sleep(0.02)
        catch_up = time.monotonic() - ended
        await asyncio.sleep(max(0.0, ended + 0.4 - time.monotonic()))  # the last frames
        sends = await asyncio.to_thread(send_times, url)
        result = {"scenario": scenario.name, "kind": scenario.kind, "variant": "console"}
        result |= reader_figures(started, ended, cpu, recorder.arrivals, sends)
        result |= lag_figures(recorder.frames, recorder.arrivals, sends)
        result |= recorder.cost() | {
            "terminal_bytes": recorder.written,
            "waiting_at_end": waiting,
            "catch_up_s": catch_up,
        }
        result["last_row"] = transcript.line_at(transcript.line_count - 1).text.strip()
        results.append(result)
    return results


async def main_async(args: argparse.Namespace) -> None:
    recorder = Recorder()
    recorder.install_frame_hook()
    app = build_app(args.url, args.model)
    out: dict = {}

    async def drive() -> None:
        try:
            recorder.install(app)
            out["results"] = await run_plan(app, args.url, plan_from_json(args.plan), recorder)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, not lost in the pty
            import traceback

            out["failed"] = "".join(traceback.format_exception(exc))[-2000:]
        finally:
            app.exit()

    running = asyncio.create_task(app.run_async())
    while not (app.is_running and app._driver is not None and app.screen.size.width):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the first frames
    app.call_later(lambda: app.run_worker(drive(), group="bench"))
    await running
    Path(args.out).write_text(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--loop", default="console", choices=("console", "asyncio"))
    parser.add_argument("--profile", help="write cProfile stats of the whole run here (for experiments)")
    args = parser.parse_args()
    if args.profile:
        import cProfile

        cProfile.runctx("run_on_loop(args.loop, main_async(args))", globals(), {"args": args}, args.profile)
    else:
        run_on_loop(args.loop, main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

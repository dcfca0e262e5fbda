"""`aiconsole chat VM [PROMPT]`: one exchange with a model server of the fleet, from a shell.

    aiconsole chat inference "Capital of Peru?"
    git diff | aiconsole chat inference "review this"    # stdin appended in a fenced block
    aiconsole chat inference --persona editor --start - < draft.md

The chat tab's core (services/chat_service.py): `auto` routing, personas, start on demand,
and the stream counted as the VM's activity so the idle timer never stops it mid-answer.
The model and why it was chosen go to stderr first; the reply streams to stdout as it
arrives, sanitised when stdout is a terminal and the original text when piped (so
`> reply.md` keeps what the model said); then one line of figures on stderr. The exchange
is kept, as said, in the chat history unless `--no-history` or `[chat] history = false`.

Exit status: 0 answered; 1 the server failed (its message on stderr; the part of the
reply already printed stays), or the VM is stopped and is not to be started, or could not
be; 2 a usage problem (no prompt, unknown VM, service or persona); 130 interrupted: Ctrl+C
closes the request, so the server stops generating.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TextIO

from aiconsole.assembly import Runtime, build_chat_service, open_chat_history
from aiconsole.domain.chat import ChatMessage, ReplyStats, stats_line
from aiconsole.domain.chat_routing import RouteDecision
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import StreamSanitizer, sanitize_line

if TYPE_CHECKING:
    from aiconsole.services.chat_service import ChatService, ChatTarget

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_YES = ("y", "yes")


class UsageError(Exception):
    """What was asked cannot be run as asked (exit status 2)."""


@dataclass(frozen=True)
class ChatRequest:
    vm: str
    prompt: str
    service: str | None = None
    model: str | None = None
    """None: `[chat] model` ("auto" routes by the `[[chat.route]]` rules)."""
    persona: str | None = None
    """None: `[chat] default_persona`; "": no system prompt."""
    start: bool = False
    """Start the VM first if it is stopped, without asking."""
    history: bool = True


@dataclass(frozen=True)
class Console:
    """Where the command talks: the reply on `out`, all else on `err`. `ask` puts a yes/no
    question (only when `interactive`: stdin and stderr are terminals)."""

    out: TextIO
    err: TextIO
    interactive: bool = False
    ask: Callable[[str], Awaitable[str]] | None = None


# --- the prompt -----------------------------------------------------------------------------------


def read_prompt(argument: str | None, stdin: TextIO | None) -> str:
    """The text to send: the argument, stdin (`-`, or no argument and stdin not a terminal),
    or both, stdin appended in a fenced block. UsageError when there is none."""
    pipe = stdin if stdin is not None and not is_terminal(stdin) else None
    if argument == "-":
        text = _read(stdin)
    elif argument is None:
        if pipe is None:
            raise UsageError("no prompt: give it as an argument, or pipe it in ('-' reads stdin)")
        text = _read(pipe)
    else:
        attached = _read(pipe)
        text = with_attachment(argument, attached) if attached.strip() else argument
    if not text.strip():
        raise UsageError("the prompt is empty")
    try:
        text.encode("utf-8")  # bytes that were not UTF-8 arrive as lone surrogates (surrogateescape)
    except UnicodeEncodeError as exc:
        raise UsageError(f"the prompt is not UTF-8 text (at character {exc.start})") from None
    return text


def _read(stream: TextIO | None) -> str:
    try:
        return stream.read() if stream is not None else ""
    except UnicodeDecodeError as exc:
        raise UsageError(f"stdin is not UTF-8 text (at byte {exc.start})") from None


def with_attachment(prompt: str, attached: str) -> str:
    """`prompt`, then `attached` in a code fence longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", attached)), default=0)
    fence = "`" * max(3, longest + 1)
    body = attached if attached.endswith("\n") else attached + "\n"
    return f"{prompt}\n\n{fence}\n{body}{fence}\n"


def route_line(decision: RouteDecision) -> str:
    """`→ deepseek-coder-v2:16b (auto: code — contains code)`, or `→ llama3.1:8b` when chosen."""
    model = sanitize_line(decision.model)
    if not decision.rule:
        return f"→ {model}"
    return f"→ {model} (auto: {sanitize_line(decision.rule)} — {sanitize_line(decision.reason)})"


# --- the command ----------------------------------------------------------------------------------


def chat_command(runtime: Runtime, request: ChatRequest, console: Console, environ: Mapping[str, str]) -> int:
    return asyncio.run(_chat(runtime, request, console, environ))


@dataclass(frozen=True)
class _Plan:
    target: ChatTarget
    setting: str
    """The model asked for: a name, or "auto"."""
    decision: RouteDecision
    persona: str
    messages: list[ChatMessage]


async def _chat(runtime: Runtime, request: ChatRequest, console: Console, environ: Mapping[str, str]) -> int:
    from aiconsole.services.chat_base import ChatError

    async with _chat_service(runtime, environ) as service:
        try:
            plan = _plan(runtime, service, request)
        except (UsageError, ChatError) as exc:
            return _say(console.err, str(exc), EXIT_USAGE)
        try:
            await runtime.monitor.open()
            await runtime.monitor.refresh(plan.target.vm)
            refused = await _power_up(runtime, service, plan.target, request, console)
        except ChatError as exc:
            return _say(console.err, str(exc), EXIT_FAILED)
        if refused is not None:
            return refused
        console.err.write(route_line(plan.decision) + "\n")
        console.err.flush()
        return await _exchange(runtime, service, plan, request, console)


@asynccontextmanager
async def _chat_service(runtime: Runtime, environ: Mapping[str, str]):
    """The chat service over an SSH pool of its own, starting VMs through the monitor (opened
    by the caller once the request is known to be sound); everything closed after."""
    from aiconsole.services.endpoints import Endpoints

    pool = service = None
    try:
        pool = await asyncio.to_thread(runtime.build_ssh_pool)
        endpoints = Endpoints(pool)
        for vm in runtime.settings.vm:
            endpoints.add_vm(vm)
        service = build_chat_service(runtime.settings, endpoints, fleet=runtime.monitor, environ=environ)
        yield service
    finally:
        if service is not None:
            await service.aclose()
        if pool is not None:
            await pool.aclose()
        await runtime.monitor.close()


def _plan(runtime: Runtime, service: ChatService, request: ChatRequest) -> _Plan:
    """What to send where, decided before anything is contacted; UsageError/ChatError if it cannot be."""
    chat = runtime.settings.chat
    if runtime.settings.vm_named(request.vm) is None:
        known = ", ".join(vm.name for vm in runtime.settings.vm) or "none in the config"
        raise UsageError(f"no VM named {request.vm!r} (VMs: {known})")
    target = service.target(request.vm, request.service)
    persona = (chat.default_persona or "") if request.persona is None else request.persona
    messages = service.messages([ChatMessage("user", request.prompt)], persona or None)
    setting = request.model or chat.model
    return _Plan(target, setting, service.choose_model(setting, request.prompt), persona, messages)


def _say(err: TextIO, problem: str, code: int) -> int:
    err.write(f"aiconsole: {problem}\n")
    err.flush()
    return code


# --- power ----------------------------------------------------------------------------------------


async def _power_up(
    runtime: Runtime, service: ChatService, target: ChatTarget, request: ChatRequest, console: Console
) -> int | None:
    """None when the VM can take the message now (started and waited for first if need be);
    else the exit status, after saying why not."""
    power = service.power(target)
    if target.can_power and power is PowerState.STARTING:  # started elsewhere: wait for it
        with _Progress(console.err) as progress:
            await service.wait_ready(target, time.monotonic() + service.options.ready_timeout_s, progress)
        return None
    if not service.needs_start(target):
        return None
    cost = f"${target.hourly_usd:.2f}/h"
    if runtime.monitor.read_only:
        return _say(
            console.err, f"read-only: {target.vm} is {power.value} and will not be started ({cost})", EXIT_FAILED
        )
    if not request.start:
        if not (console.interactive and console.ask is not None and runtime.settings.chat.start_on_demand):
            return _say(console.err, f"{target.vm} is {power.value}; pass --start to start it ({cost})", EXIT_FAILED)
        answer = await console.ask(f"{target.vm} is {power.value}. Start it ({cost})? [y/N] ")
        if answer.strip().lower() not in _YES:
            return _say(console.err, f"{target.vm} not started; nothing sent", EXIT_FAILED)
    try:
        with _Progress(console.err) as progress:
            await service.start(target, progress)
    except asyncio.CancelledError:
        console.err.write(f"{target.vm} may still be starting: `aiconsole vm stop {target.vm}` stops it\n")
        raise
    return None


class _Progress:
    """The steps of a start, on stderr: one line redrawn in place on a terminal, a line per
    new step when piped (a log, not an animation)."""

    def __init__(self, err: TextIO) -> None:
        self._err, self._tty, self._last = err, is_terminal(err), ""

    def __call__(self, step: str) -> None:
        step = sanitize_line(step)  # carries a server's error while it waits
        if step == self._last:
            return
        self._last = step
        self._err.write("\r\x1b[K" + step if self._tty else step + "\n")
        self._err.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tty and self._last:
            self._err.write("\n")
            self._err.flush()


async def ask_on_terminal(question: str, err: TextIO, stdin: TextIO) -> str:
    """Put `question` on `err` and read one line from the terminal on `stdin`, without a
    thread: Ctrl+C (which cancels the command) must not leave a reader blocked on the tty."""
    err.write(question)
    err.flush()
    loop = asyncio.get_running_loop()
    fd = stdin.fileno()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    except asyncio.CancelledError:
        err.write("\n")
        raise
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 4096).decode(errors="replace")  # a tty gives one line; "" at Ctrl+D


# --- the exchange ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    text: str
    """The reply as received (what is kept), however much of it came."""
    stats: ReplyStats | None
    error: str = ""
    interrupted: bool = False


async def _exchange(runtime: Runtime, service: ChatService, plan: _Plan, request: ChatRequest, console: Console) -> int:
    record = _Record.begin(runtime, plan, request, console.err)
    try:
        outcome = await _stream(service, plan, console.out)
        if record is not None:
            record.finish(plan, outcome)
    finally:
        if record is not None:
            record.close()
    return _report(outcome, plan.target, console.err)


async def _stream(service: ChatService, plan: _Plan, out: TextIO) -> _Outcome:
    """Print the reply as it comes; a ChatError or an interrupt ends it, keeping what came."""
    from aiconsole.services.chat_base import ChatError

    shown = _ReplyWriter(out)
    pieces: list[str] = []
    reply: Any = None
    error, interrupted = "", False
    try:
        async with service.reply(plan.target, plan.decision.model, plan.messages) as reply:
            async for piece in reply:
                pieces.append(piece)
                shown.write(piece)
    except ChatError as exc:
        error = str(exc)
    except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl+C: leaving the block closed the request
        interrupted = True
        _forget_cancellation()
    shown.end()
    return _Outcome("".join(pieces), getattr(reply, "stats", None), error, interrupted)


def _forget_cancellation() -> None:
    """asyncio.run turns Ctrl+C into a cancellation of the command; it is handled here (the
    command goes on to report and close), so later waits must not see it as pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()


def _report(outcome: _Outcome, target: ChatTarget, err: TextIO) -> int:
    if outcome.error:
        return _say(err, outcome.error, EXIT_FAILED)
    stats = outcome.stats
    line = "stopped" if stats is None else stats_line(stats, target.hourly_usd)
    err.write(line + "\n")
    err.flush()
    return EXIT_INTERRUPTED if outcome.interrupted else EXIT_OK


class _ReplyWriter:
    """The reply on stdout as it arrives: through one `StreamSanitizer` on a terminal (an
    escape sequence split across pieces is still caught), as received when piped; ends
    with a newline."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._clean = StreamSanitizer() if is_terminal(out) else None
        self._last = ""

    def write(self, piece: str) -> None:
        self._put(self._clean.feed(piece) if self._clean is not None else piece)

    def end(self) -> None:
        if self._clean is not None:
            self._put(self._clean.flush())
        if self._last and self._last != "\n":
            self._out.write("\n")
        self._out.flush()

    def _put(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._last = text[-1]


# --- the history ----------------------------------------------------------------------------------


class _Record:
    """The exchange in the chat history: the prompt as it is sent, the reply when it ends.
    The original text both ways; a history that cannot be written is said, not fatal."""

    def __init__(self, history: Any, chat_id: int, err: TextIO) -> None:
        self._history, self._chat_id, self._err = history, chat_id, err

    @classmethod
    def begin(cls, runtime: Runtime, plan: _Plan, request: ChatRequest, err: TextIO) -> _Record | None:
        from aiconsole.services.chat_history import ChatHistoryError, StoredMessage

        history = None
        try:
            history = open_chat_history(runtime) if request.history else None
            if history is None:
                return None
            target, now = plan.target, _now()
            chat_id = history.new_chat(
                vm=target.vm, service=target.service, model=plan.setting, persona=plan.persona, at=now
            )
            history.add_message(chat_id, StoredMessage("user", request.prompt, now))
        except ChatHistoryError as exc:
            if history is not None:
                history.close()
            _say(err, f"not kept in the chat history: {exc}", EXIT_FAILED)
            return None
        return cls(history, chat_id, err)

    def finish(self, plan: _Plan, outcome: _Outcome) -> None:
        from aiconsole.services.chat_history import ChatHistoryError, StoredMessage

        message = StoredMessage.reply(outcome.text, _now(), plan.decision, outcome.stats, outcome.error)
        try:
            self._history.add_message(self._chat_id, message)
        except ChatHistoryError as exc:
            _say(self._err, f"reply not kept in the chat history: {exc}", EXIT_FAILED)

    def close(self) -> None:
        self._history.close()


def _now() -> datetime:
    return datetime.now(UTC)


def is_terminal(stream: Any) -> bool:
    """A terminal (False for None, a pipe, a file, or a stream already closed)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or closed
        return False

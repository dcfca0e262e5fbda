"""`ChatService`: what the chat tab and `aiconsole chat` share, above the two backends.

    service = ChatService(targets, endpoints, options, fleet=monitor)
    target = service.target("inference")
    if service.needs_start(target):            # stopped: offer to start it first
        await service.start(target, progress=print)
    decision = service.choose_model("auto", text)   # the model, and the rule that chose it
    messages = service.messages(history, persona="editor")
    async with service.reply(target, decision.model, messages) as reply:
        async for piece in reply: ...
    reply.stats

It knows every VM's chat servers (`ollama` and `openai` services), reaches each where
`Endpoints` says (an SSH forward for `via_ssh`, asked anew per reply: a reconnect may move
the port), and keeps one client per server URL. While a reply streams it tells the fleet
once a second that the VM is in use ("chat stream"), so the idle timer never stops a VM
in the middle of an answer. Starting on demand goes through the VM's provider (the
fleet monitor), then waits until the model server answers its health check.

The backends (and so the ollama client and httpx) are imported on first use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiconsole.domain.chat import ChatMessage, with_system_prompt
from aiconsole.domain.chat_routing import DEFAULT_MODEL, DEFAULT_RULES, RouteDecision, RouteRule, route
from aiconsole.domain.idle import ActivityKind
from aiconsole.domain.model_server import ModelServer
from aiconsole.domain.power import PowerState
from aiconsole.services.chat_base import DEFAULT_TIMEOUTS, ChatError, ChatTimeouts
from aiconsole.services.ssh_errors import SshError

if TYPE_CHECKING:
    from aiconsole.services.endpoints import Endpoints

__all__ = ["AUTO", "ChatOptions", "ChatService", "ChatTarget", "FleetControl"]

AUTO = "auto"
ACTIVITY_EVERY_S = 5.0
CHAT_LEASE_S = 20.0
"""A stream holds its VM busy this long past each renewal (every ACTIVITY_EVERY_S): long
enough to bridge a slow renewal, short enough that a console killed mid-stream frees the
VM's idle timer soon after."""
CHAT_ACTIVITY = "chat stream"
READY_POLL_S = 2.0


ChatTarget = ModelServer
"""Where a chat goes: one model server of the fleet (an `ollama` or `openai` service)."""


@dataclass(frozen=True)
class ChatOptions:
    """The `[chat]` section, as the service uses it."""

    rules: tuple[RouteRule, ...] = DEFAULT_RULES
    fallback_model: str = DEFAULT_MODEL
    personas: Mapping[str, str] = field(default_factory=dict)
    """Persona name -> system prompt."""
    ready_timeout_s: float = 600.0

    @classmethod
    def of(cls, chat: Any) -> ChatOptions:
        """From a config `ChatConfig`."""
        rules = tuple(RouteRule(r.name, r.model, r.code, r.max_words, tuple(r.keywords)) for r in chat.route)
        personas = {p.name: p.system for p in chat.persona}
        return cls(rules, chat.fallback_model, personas, chat.ready_timeout_s)


class FleetControl(Protocol):
    """What the service uses of the fleet monitor: power, starting, activity."""

    def powers(self) -> dict[str, PowerState]: ...
    async def start_vm(self, name: str) -> None: ...
    def note_activity(self, name: str, kind: str, detail: str, *, lease_s: float | None = None) -> None: ...


class ChatService:
    def __init__(
        self,
        targets: Sequence[ChatTarget],
        endpoints: Endpoints,
        options: ChatOptions = ChatOptions(),
        *,
        fleet: FleetControl | None = None,
        environ: Mapping[str, str] | None = None,
        timeouts: ChatTimeouts = DEFAULT_TIMEOUTS,
        reach_timeout_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: seconds on one monotonic clock, for deadlines and the replies' timing (a
        stepping fake makes TTFT and tokens/s exact in snapshot tests)."""
        self.targets = tuple(targets)
        self.endpoints = endpoints
        self.options = options
        self.fleet = fleet
        self._environ = dict(environ or {})
        self._timeouts = timeouts
        self._reach_timeout_s = reach_timeout_s
        self._clock = clock
        self._clients: dict[tuple[str, str], tuple[str, Any]] = {}
        """(vm, service) -> (the URL it was made for, the backend client)."""

    # -- choosing -------------------------------------------------------------------------

    def target(self, vm: str, service: str | None = None) -> ChatTarget:
        """The VM's chat server (`service`, or its first); ChatError naming what exists."""
        found = [t for t in self.targets if t.vm == vm and (service is None or t.service == service)]
        if found:
            return found[0]
        known = ", ".join(t.label for t in self.targets) or "none in the config"
        wanted = f"{vm}/{service}" if service else vm
        raise ChatError(f"no chat server {wanted!r}: ollama and openai services are {known}")

    def choose_model(self, setting: str, text: str) -> RouteDecision:
        """`auto`: the routing rules' pick for `text`; else the model asked for."""
        if setting == AUTO:
            return route(text, self.options.rules, self.options.fallback_model)
        return RouteDecision(setting, "", "chosen")

    def messages(self, history: Sequence[ChatMessage], persona: str | None) -> list[ChatMessage]:
        """The turns to send, after the persona's system prompt; ChatError for an unknown persona."""
        if not persona:
            return with_system_prompt(list(history), None)
        system = self.options.personas.get(persona)
        if system is None:
            known = ", ".join(self.options.personas) or "none in the config"
            raise ChatError(f"no persona {persona!r} (personas: {known})")
        return with_system_prompt(list(history), system)

    # -- power ----------------------------------------------------------------------------

    def power(self, target: ChatTarget) -> PowerState:
        if self.fleet is None:
            return PowerState.UNKNOWN
        return self.fleet.powers().get(target.vm, PowerState.UNKNOWN)

    def needs_start(self, target: ChatTarget) -> bool:
        """The VM is off and could be started from here: sending must start it first."""
        return target.can_power and self.power(target) in (PowerState.STOPPED, PowerState.STOPPING)

    async def start(self, target: ChatTarget, progress: Callable[[str], None] = lambda _: None) -> None:
        """Start the VM through its provider, then wait until its model server answers."""
        if self.fleet is None:
            raise ChatError(f"{target.vm}: cannot start it from here")
        deadline = self._clock() + self.options.ready_timeout_s
        if self.power(target) != PowerState.RUNNING:
            progress(f"starting {target.vm}…")
            try:
                async with asyncio.timeout(self.options.ready_timeout_s):
                    await self.fleet.start_vm(target.vm)
            except TimeoutError:
                raise ChatError(f"{target.vm} did not start within {self.options.ready_timeout_s:g} s") from None
            except Exception as exc:  # the provider's error, said as it is
                raise ChatError(f"could not start {target.vm}: {exc}") from None
        await self.wait_ready(target, deadline, progress)

    async def wait_ready(self, target: ChatTarget, deadline: float, progress: Callable[[str], None]) -> None:
        """Until the server's health check says up (a VM just started still boots its
        services: SSH first, then Ollama loading); ChatError at `deadline`."""
        from aiconsole.domain.health import HealthState
        from aiconsole.services.health import HealthChecker

        last = ""
        async with HealthChecker(timeout_s=5.0) as checker:
            while True:
                progress(f"waiting for {target.service} on {target.vm}…" + (f" ({last})" if last else ""))
                try:
                    url = await self._url(target, timeout_s=max(1.0, deadline - self._clock()))
                    health = await checker.check(target.service, target.kind, url)
                    if health.state == HealthState.UP:
                        return
                    last = health.error or health.state.value
                except ChatError as exc:
                    last = str(exc)
                if self._clock() + READY_POLL_S > deadline:
                    raise ChatError(f"{target.label} was not ready within {self.options.ready_timeout_s:g} s: {last}")
                await asyncio.sleep(READY_POLL_S)

    # -- replying -------------------------------------------------------------------------

    @asynccontextmanager
    async def reply(
        self, target: ChatTarget, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> AsyncIterator[Any]:
        """The backend's streamed reply (see services/chat_base.py), counted as the VM's
        activity while it runs."""
        backend = await self._backend(target)
        ticker = asyncio.create_task(self._note_activity(target.vm), name=f"chat-activity-{target.vm}")
        try:
            async with backend.reply(model, messages, **options) as reply:
                yield reply
        finally:
            ticker.cancel()
            with suppress(asyncio.CancelledError):
                await ticker
            if self.fleet is not None:  # ended: an instant now, so idleness counts from here
                self.fleet.note_activity(target.vm, ActivityKind.CHAT, CHAT_ACTIVITY)

    async def _note_activity(self, vm: str) -> None:
        if self.fleet is None:
            return
        while True:  # busy while it streams: a lease renewed until the reply ends
            self.fleet.note_activity(vm, ActivityKind.CHAT, CHAT_ACTIVITY, lease_s=CHAT_LEASE_S)
            await asyncio.sleep(ACTIVITY_EVERY_S)

    async def _backend(self, target: ChatTarget) -> Any:
        url = (await self._url(target, timeout_s=self._reach_timeout_s)).rstrip("/")
        key = (target.vm, target.service)
        made_for, client = self._clients.get(key, ("", None))
        if client is not None and made_for == url:
            return client
        if client is not None:
            with suppress(Exception):
                await client.close()
        client = self._new_client(target, url)
        self._clients[key] = (url, client)
        return client

    def _new_client(self, target: ChatTarget, url: str) -> Any:
        if target.kind == "ollama":
            from aiconsole.services.chat_ollama import OllamaChat

            return OllamaChat(url, self._timeouts, clock=self._clock)
        from aiconsole.services.chat_openai import OpenAIChat

        key = self._environ.get(target.api_key_env) if target.api_key_env else None
        if target.api_key_env and not key:
            raise ChatError(f"{target.label}: the API key variable {target.api_key_env} is not set")
        return OpenAIChat(url, api_key=key, timeouts=self._timeouts, clock=self._clock)

    async def _url(self, target: ChatTarget, *, timeout_s: float) -> str:
        try:
            async with asyncio.timeout(timeout_s):
                return await self.endpoints.url(target.vm, target.service)
        except TimeoutError:
            raise ChatError(f"{target.vm}: no SSH connection within {timeout_s:g} s", retryable=True) from None
        except SshError as exc:
            raise ChatError(f"{target.vm}: {exc}", retryable=True) from None

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for _, client in clients:
            with suppress(Exception):
                await client.close()

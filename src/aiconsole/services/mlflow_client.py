"""MLflow tracking server over its REST API 2.0 (httpx; the `mlflow` package is never imported).

Experiments (`experiments/search`), runs (`runs/search`, `runs/get`) and metric histories
(`metrics/get-history`), paginated where the server paginates. Every failure — refused,
timed out, dropped mid-answer, 5xx, 401/403, a body that is not the JSON expected — is one
`MlflowError(message, retryable, status)` whose message is sanitised and never holds the
token or password.

Incremental tail: why it works the way it does. The REST API has no "points after step N"
filter. `metrics/get-history-bulk-interval` takes a step range, but it is the UI's
`/ajax-api` route, it samples the range down to `max_results` (points are lost), and the
server reads the whole history to choose the steps. `metrics/get-history` with
`max_results` is paginated by offset (checked in MLflow 3.17's SQL store: rows ordered by
timestamp, step, value; the page token encodes the offset; a token is only given when
another full page exists). So `MetricTail` keeps the token of the page it is on — the
first page that was not yet full — and how many of its points it has already seen. Each
poll asks for that page again and keeps only the points past those seen; a page that
fills up hands over the next token and the tail moves on. A poll costs one request plus
one per `page_size` new points, and carries at most `page_size` old points, whatever the
run's length. Only server-issued tokens are used, so nothing depends on the token format.

`RunTail` adds one `runs/get` per poll (its size grows with the number of metric keys,
not with steps): a metric whose latest point has not changed is not asked for at all, and
a run that ended stops being polled once its histories are read to the end. If a history
shrinks (run deleted and recreated, server pointed at another store) the tail starts over
and says so (`reset`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from aiconsole.domain.mlflow import (
    Experiment,
    MetricPoint,
    Run,
    from_millis,
    metric_value,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.secret import Secret
from aiconsole.services.http_errors import transport_problem
from aiconsole.services.tls import shared_ssl_context

API = "/api/2.0/mlflow"
_EPOCH = datetime.fromtimestamp(0, UTC)
_PAGE = 1000  # runs/search caps max_results at 50,000; experiments/search at 50,000


class MlflowError(Exception):
    """Anything that went wrong talking to MLflow, worded for the operator."""

    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status


class MlflowClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: Secret | None = None,
        basic: tuple[str, Secret] | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._secrets = [s.reveal() for s in (token, basic[1] if basic else None) if s]
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token.reveal()}"
        auth = httpx.BasicAuth(basic[0], basic[1].reveal()) if basic else None
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            event_hooks=dict(event_hooks or {}),
            verify=shared_ssl_context(),
        )

    def __repr__(self) -> str:
        return f"MlflowClient({self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- reads -----------------------------------------------------------------------------

    async def experiments(self, *, include_deleted: bool = False) -> list[Experiment]:
        body: dict[str, Any] = {"max_results": _PAGE, "view_type": "ALL" if include_deleted else "ACTIVE_ONLY"}
        found = []
        async for item in self._pages("POST", "/experiments/search", body, "experiments"):
            found.append(_experiment(item))
        return found

    async def runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str = "",
        order_by: Sequence[str] = ("attributes.start_time DESC",),
        limit: int | None = None,
        page_size: int = _PAGE,
    ) -> list[Run]:
        """Runs of the experiments, every page up to `limit` (None: all)."""
        body: dict[str, Any] = {
            "experiment_ids": list(experiment_ids),
            "order_by": list(order_by),
            "max_results": page_size if limit is None else min(page_size, limit),
        }
        if filter:
            body["filter"] = filter
        found: list[Run] = []
        async for item in self._pages("POST", "/runs/search", body, "runs"):
            found.append(_run(item))
            if limit is not None and len(found) >= limit:
                break
        return found

    async def run(self, run_id: str) -> Run:
        payload = await self._call("GET", "/runs/get", params={"run_id": run_id})
        return _run(_field(payload, "run", dict))

    async def history_page(
        self, run_id: str, key: str, *, page_token: str | None = None, max_results: int = 1000
    ) -> tuple[list[MetricPoint], str | None]:
        """One page of a metric's history, oldest first, and the token of the next full page."""
        params = {"run_id": run_id, "metric_key": key, "max_results": str(max_results)}
        if page_token:
            params["page_token"] = page_token
        payload = await self._call("GET", "/metrics/get-history", params=params)
        items = _field(payload, "metrics", list, default=[])
        return [_point(item, key) for item in items], _token(payload)

    async def history(self, run_id: str, key: str, *, page_size: int = 1000) -> list[MetricPoint]:
        """A metric's whole history, every page."""
        points: list[MetricPoint] = []
        token: str | None = None
        while True:
            page, token = await self.history_page(run_id, key, page_token=token, max_results=page_size)
            points += page
            if token is None:
                return points

    # -- the wire --------------------------------------------------------------------------

    async def _pages(self, method: str, path: str, body: dict[str, Any], field: str):
        token: str | None = None
        while True:
            payload = await self._call(method, path, json_body=body | ({"page_token": token} if token else {}))
            for item in _field(payload, field, list, default=[]):
                if isinstance(item, dict):
                    yield item
            token = _token(payload)
            if token is None:
                return

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json_body: Any = None
    ) -> dict[str, Any]:
        doing = f"MLflow {path.strip('/')}"
        try:
            response = await self._http.request(method, path, params=params, json=json_body)
            await response.aread()
        except httpx.HTTPError as exc:
            problem = transport_problem(exc, doing, f"MLflow at {self.base_url}")
            message, retryable = problem or (f"{doing}: {type(exc).__name__}: {exc}", True)
            raise self._error(message, retryable) from None
        if response.status_code >= 400:
            raise self._status_error(doing, response)
        try:
            payload = response.json()
        except (ValueError, UnicodeDecodeError):
            snippet = response.text[:80]
            raise self._error(f"{doing}: the answer is not JSON: {snippet}", True, response.status_code) from None
        if not isinstance(payload, dict):
            raise self._error(f"{doing}: the answer is JSON but not an object", True, response.status_code)
        return payload

    def _status_error(self, doing: str, response: httpx.Response) -> MlflowError:
        status = response.status_code
        detail = _server_message(response)
        detail = f": {detail}" if detail else ""
        if status in (401, 403):
            return self._error(f"{doing}: MLflow refused the credentials (HTTP {status}){detail}", False, status)
        if status == 404:
            return self._error(f"{doing}: not found (HTTP 404){detail}", False, status)
        retryable = status >= 500 or status in (408, 429)
        return self._error(f"{doing}: HTTP {status}{detail}", retryable, status)

    def _error(self, message: str, retryable: bool, status: int | None = None) -> MlflowError:
        for secret in self._secrets:
            message = message.replace(secret, "********")
        return MlflowError(sanitize_line(message, 300), retryable, status)


# -- tails ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailUpdate:
    points: tuple[MetricPoint, ...]
    """New points, oldest first (all of them on the first poll or after a reset)."""
    reset: bool = False
    """The history shrank and was read again from the start: replace, do not append."""


class MetricTail:
    """A metric's history, read once and then only what was added since (see module doc)."""

    def __init__(self, client: MlflowClient, run_id: str, key: str, *, page_size: int = 1000) -> None:
        self.client, self.run_id, self.key = client, run_id, key
        self.page_size = page_size
        self._page_token: str | None = None  # start of the first page that was not full
        self._seen_in_page = 0
        self.loaded = False
        self.last: MetricPoint | None = None

    async def poll(self) -> TailUpdate:
        """The points added since the last poll. All or nothing: a poll that fails (on any of
        its pages) changes nothing, so the next one brings its points too."""
        reset = False
        new: list[MetricPoint] = []
        token, seen = self._page_token, self._seen_in_page
        while True:
            points, next_token = await self.client.history_page(
                self.run_id, self.key, page_token=token, max_results=self.page_size
            )
            if len(points) < seen:  # the history shrank under us: start over
                token, seen, new, reset = None, 0, [], self.loaded
                continue
            new += points[seen:]
            if next_token is None:
                seen = len(points)
                break
            token, seen = next_token, 0
        self._page_token, self._seen_in_page, self.loaded = token, seen, True
        if new:
            self.last = new[-1]
        return TailUpdate(tuple(new), reset)

    def checkpoint(self) -> tuple:
        """Where the tail stands (`restore` goes back there): for a poll of several tails."""
        return (self._page_token, self._seen_in_page, self.loaded, self.last)

    def restore(self, checkpoint: tuple) -> None:
        self._page_token, self._seen_in_page, self.loaded, self.last = checkpoint


@dataclass(frozen=True, slots=True)
class RunUpdate:
    run: Run
    metrics: dict[str, TailUpdate]
    """Only the metrics that were fetched this poll."""
    done: bool
    """The run has ended and every tailed history was read to its end: stop polling."""


class RunTail:
    """Tails a run's metrics: one `runs/get` per poll, history only for metrics that moved."""

    def __init__(
        self, client: MlflowClient, run_id: str, keys: Iterable[str] | None = None, *, page_size: int = 1000
    ) -> None:
        self.client, self.run_id = client, run_id
        self._keys = set(keys) if keys is not None else None  # None: every metric the run has
        self._page_size = page_size
        self._tails: dict[str, MetricTail] = {}
        self._latest_seen: dict[str, tuple] = {}
        self.done = False
        self.run: Run | None = None

    def use_client(self, client: MlflowClient) -> None:
        """Go on with another client (a forward moved to a new port): the tail's place is kept."""
        self.client = client
        for tail in self._tails.values():
            tail.client = client

    async def poll(self) -> RunUpdate:
        if self.done and self.run is not None:
            return RunUpdate(self.run, {}, True)  # nothing asked: an ended run does not change
        run = await self.client.run(self.run_id)
        # All or nothing: if a later metric's read fails, the points already read this poll
        # would be lost with the exception. So every tail goes back to where it stood, and
        # the next poll reads them again.
        saved = {key: tail.checkpoint() for key, tail in self._tails.items()}
        seen = dict(self._latest_seen)
        try:
            updates = await self._read_moved(run)
        except BaseException:
            self._tails = {key: tail for key, tail in self._tails.items() if key in saved}
            for key, tail in self._tails.items():
                tail.restore(saved[key])
            self._latest_seen = seen
            raise
        self.run = run
        self.done = run.is_finished
        return RunUpdate(run, updates, self.done)

    async def _read_moved(self, run: Run) -> dict[str, TailUpdate]:
        """The new points of each tailed metric whose latest point moved."""
        updates: dict[str, TailUpdate] = {}
        for key, latest in run.latest.items():
            if self._keys is not None and key not in self._keys:
                continue
            if self._latest_seen.get(key) == latest.identity:
                continue
            tail = self._tails.get(key) or self._tails.setdefault(
                key, MetricTail(self.client, self.run_id, key, page_size=self._page_size)
            )
            updates[key] = await tail.poll()
            self._latest_seen[key] = latest.identity
        return updates


# -- parsing -------------------------------------------------------------------------------


def _field(payload: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = payload.get(name, default)
    if value is None or not isinstance(value, kind):
        raise MlflowError(f"MLflow answered without a valid {name!r} field", True)
    return value


def _token(payload: dict[str, Any]) -> str | None:
    token = payload.get("next_page_token")
    return token if isinstance(token, str) and token else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _experiment(item: dict[str, Any]) -> Experiment:
    return Experiment(
        id=_text(item.get("experiment_id")),
        name=_text(item.get("name")),
        lifecycle_stage=_text(item.get("lifecycle_stage")) or "active",
    )


def _point(item: Any, key: str = "") -> MetricPoint:
    if not isinstance(item, dict):
        raise MlflowError("MLflow sent a metric that is not an object", True)
    try:
        step = int(item.get("step") or 0)
    except (TypeError, ValueError):
        step = 0
    return MetricPoint(
        key=_text(item.get("key")) or key,
        value=metric_value(item.get("value")),
        step=step,
        timestamp=from_millis(item.get("timestamp")) or _EPOCH,
    )


def _pairs(items: Any) -> dict[str, str]:
    if not isinstance(items, list):
        return {}
    return {_text(i.get("key")): _text(i.get("value")) for i in items if isinstance(i, dict)}


def _run(item: dict[str, Any]) -> Run:
    info = item.get("info") if isinstance(item.get("info"), dict) else {}
    data = item.get("data") if isinstance(item.get("data"), dict) else {}
    run_id = _text(info.get("run_id") or info.get("run_uuid"))
    if not run_id:
        raise MlflowError("MLflow sent a run without an id", True)
    metrics = data.get("metrics") if isinstance(data.get("metrics"), list) else []
    latest = {point.key: point for point in (_point(m) for m in metrics) if point.key}
    return Run(
        id=run_id,
        name=_text(info.get("run_name")),
        experiment_id=_text(info.get("experiment_id")),
        status=_text(info.get("status")) or "UNKNOWN",
        start_time=from_millis(info.get("start_time")),
        end_time=from_millis(info.get("end_time")),
        user=_text(info.get("user_id")),
        params=_pairs(data.get("params")),
        tags=_pairs(data.get("tags")),
        latest=latest,
    )


def _server_message(response: httpx.Response) -> str:
    """MLflow's own words: {"error_code": ..., "message": ...}; else a short text body."""
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("error")
        code = payload.get("error_code")
        text = " ".join(_text(part) for part in (code, message) if part)
        if text:
            return text[:200]
    if "html" in response.headers.get("content-type", ""):
        return ""
    return response.text[:200]


__all__ = [
    "MetricTail",
    "MlflowClient",
    "MlflowError",
    "RunTail",
    "RunUpdate",
    "TailUpdate",
]

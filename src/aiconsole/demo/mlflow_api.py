"""`FakeMlflow`: an MLflow tracking server on loopback, speaking REST API 2.0 as MLflow 3.x does.

The demo's MLflow service runs one, and the tests of `services.mlflow_client` drive the
real client against it. It answers what the client reads, in the shapes the real
`mlflow server` 3.17 sends (seen in tests/test_mlflow_client.py against the real thing):

| route | answer |
|---|---|
| `GET`/`POST /api/2.0/mlflow/experiments/search` | `{"experiments": [...], "next_page_token"?}` |
| `POST /api/2.0/mlflow/runs/search` | `{"runs": [{"info", "data", "inputs"}], "next_page_token"?}`; `filter` (clauses `key op 'value'` joined by AND; `=`, `!=`, `LIKE`, `ILIKE`), `order_by` (`attributes.start_time DESC`, `end_time`, `status`, `run_name`, `metrics.K`, `params.K`) |
| `GET /api/2.0/mlflow/runs/get?run_id=` | `{"run": {...}}`, latest point of each metric in `data.metrics` |
| `GET /api/2.0/mlflow/metrics/get-history?run_id=&metric_key=&max_results=&page_token=` | `{"metrics": [...], "next_page_token"?}` |
| `GET /health` | `OK` (from `FakeServiceHealth`) |

Wire details kept: pretty-printed JSON; timestamps as integer epoch milliseconds; NaN as
the string "NaN" and ±inf as ±1.7976931348623157e308 (the SQL store cannot hold an
infinity); empty lists left out, as protobuf JSON does; paging by offset in tokens the
client treats as opaque (base64 JSON, as MLflow's `SearchUtils.create_page_token`),
a token only when rows exist past the page; errors as
`{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}` (404) or
`INVALID_PARAMETER_VALUE` (400).

Content: experiment "lora-llama3.1-8b" with a FINISHED run `lora-r8` (1,200 steps) and a
RUNNING run `lora-r16` that started `running_for_s` before the fake was made and logs one
step every `step_every_s`: points are computed from `clock` (epoch seconds) on each
request, so they appear with time and no background task is needed. Loss falls with
seeded noise, the learning rate warms up and follows a cosine, eval metrics come every
25 steps. Knobs: `clock`, `step_every_s`, `finish_running()`, `add_run(...)`, `faults`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.demo.httpserver import Request, Response

API = "/api/2.0/mlflow"
EXPERIMENT = "lora-llama3.1-8b"
BASE_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
EVAL_EVERY = 25
"""Eval metrics (eval_loss, perplexity) are logged every this many steps; the rest every step."""
METRICS: dict[str, int] = {"train_loss": 1, "learning_rate": 1, "gpu_mem_gb": 1,
                           "eval_loss": EVAL_EVERY, "perplexity": EVAL_EVERY}  # fmt: skip
_MAX_SEARCH = 50_000


class MlflowApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(message: str) -> MlflowApiError:
    return MlflowApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def invalid(message: str) -> MlflowApiError:
    return MlflowApiError(400, "INVALID_PARAMETER_VALUE", message)


@dataclass
class FakeRun:
    """One run; its points are a pure function of its seed and how many steps have passed."""

    run_id: str
    name: str
    experiment_id: str
    start_ms: int
    step_every_ms: int
    total_steps: int
    params: dict[str, str]
    tags: dict[str, str]
    user: str = "operator"
    loss_start: float = 2.45
    loss_floor: float = 0.9
    mem_gb: float = 17.8
    seed: int = 0
    ended_ms: int | None = None
    end_status: str = "FINISHED"
    _values: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _rngs: dict[str, random.Random] = field(default_factory=dict, repr=False)

    def steps(self, now_ms: int) -> int:
        """Steps logged by `now_ms` (step k is logged at start + k * step_every)."""
        until = now_ms if self.ended_ms is None else min(now_ms, self.ended_ms)
        return max(0, min(self.total_steps, (until - self.start_ms) // self.step_every_ms))

    def end_ms(self, now_ms: int) -> int | None:
        if self.ended_ms is not None and now_ms >= self.ended_ms:
            return self.ended_ms
        if self.steps(now_ms) >= self.total_steps:  # the script ran to its last step and ended
            return self.start_ms + self.total_steps * self.step_every_ms
        return None

    def status(self, now_ms: int) -> str:
        if self.ended_ms is not None and now_ms >= self.ended_ms:
            return self.end_status
        return "RUNNING" if self.end_ms(now_ms) is None else "FINISHED"

    def points(self, key: str, now_ms: int) -> list[dict[str, Any]]:
        every = METRICS.get(key)
        if every is None:
            return []
        count = self.steps(now_ms) // every
        values = self._series(key, count)
        return [_point(key, values[i], (i + 1) * every, self.start_ms + (i + 1) * every * self.step_every_ms)
                for i in range(count)]  # fmt: skip

    def latest(self, now_ms: int) -> list[dict[str, Any]]:
        done = self.steps(now_ms)
        found = []
        for key, every in METRICS.items():
            if count := done // every:
                value = self._series(key, count)[count - 1]
                found.append(_point(key, value, count * every, self.start_ms + count * every * self.step_every_ms))
        return found

    def _series(self, key: str, count: int) -> list[float]:
        """The first `count` values of a metric, made once, in order, from the run's seed."""
        values = self._values.setdefault(key, [])
        rng = self._rngs.setdefault(key, random.Random(f"{self.seed}:{self.run_id}:{key}"))
        while len(values) < count:
            step = (len(values) + 1) * METRICS[key]
            values.append(self._value(key, step, len(values), rng))
        return values

    def _value(self, key: str, step: int, index: int, rng: random.Random) -> float:
        tau = max(1.0, self.total_steps / 5)
        decay = math.exp(-step / tau)
        if key == "train_loss":
            noise = rng.gauss(0, 0.03 + 0.06 * decay)
            return round(max(0.05, self.loss_floor + (self.loss_start - self.loss_floor) * decay + noise), 6)
        if key == "eval_loss":
            base = self.loss_floor + 0.07 + (self.loss_start - self.loss_floor) * 0.95 * decay
            return round(base + rng.gauss(0, 0.008), 6)
        if key == "perplexity":
            return round(math.exp(self._series("eval_loss", index + 1)[index]), 6)
        if key == "gpu_mem_gb":
            return round(self.mem_gb + rng.gauss(0, 0.12), 3)
        peak = float(self.params.get("learning_rate", "2e-4"))
        warmup = max(1, round(self.total_steps * 0.03))
        if step <= warmup:
            return peak * step / warmup
        return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, self.total_steps - warmup)))


def _point(key: str, value: float, step: int, timestamp: int) -> dict[str, Any]:
    return {"key": key, "value": wire_value(value), "timestamp": timestamp, "step": step}


def wire_value(value: float) -> float | str:
    """A metric value as MLflow's REST API writes it: "NaN"; ±inf as ±float max (SQL store)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value


class FakeMlflow(FakeServiceHealth):
    """An MLflow tracking server with one finished and one running LoRA run."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        step_every_s: float = 2.0,
        running_for_s: float = 600.0,
        seed: int = 8,
        user: str = "operator",
    ) -> None:
        super().__init__("mlflow", version="3.17.2", clock=clock)
        self.step_every_s = step_every_s
        self.user = user
        self.seed = seed
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, FakeRun] = {}
        now = self._now_ms()
        self.add_experiment("Default", experiment_id="0", created_ms=now - 30 * 86_400_000)
        self.experiment_id = self.add_experiment(EXPERIMENT, created_ms=now - 5 * 3_600_000)
        self.finished = self.add_run(
            "lora-r8", lora_r=8, steps=1200, step_every_s=6.0, start_s=now / 1000 - 4 * 3600, running=False
        )
        self.running = self.add_run(
            "lora-r16", lora_r=16, steps=3600, step_every_s=step_every_s, start_s=now / 1000 - running_for_s,
            loss_floor=0.82, mem_gb=19.4,
        )  # fmt: skip
        for method in ("GET", "POST"):
            self.router.add(method, f"{API}/experiments/search", self._experiments_search)
        self.router.add("POST", f"{API}/runs/search", self._runs_search)
        self.router.add("GET", f"{API}/runs/get", self._runs_get)
        self.router.add("GET", f"{API}/metrics/get-history", self._get_history)

    # --- knobs -----------------------------------------------------------------------

    def add_experiment(self, name: str, *, experiment_id: str | None = None, created_ms: int | None = None) -> str:
        experiment_id = experiment_id or str(max((int(i) for i in self.experiments), default=0) + 1)
        created = created_ms if created_ms is not None else self._now_ms()
        self.experiments[experiment_id] = {
            "experiment_id": experiment_id, "name": name, "artifact_location": f"mlflow-artifacts:/{experiment_id}",
            "lifecycle_stage": "active", "last_update_time": created, "creation_time": created,
        }  # fmt: skip
        return experiment_id

    def add_run(
        self,
        name: str,
        *,
        lora_r: int = 8,
        steps: int = 1200,
        step_every_s: float | None = None,
        start_s: float | None = None,
        running: bool = True,
        experiment_id: str | None = None,
        learning_rate: str = "2e-4",
        loss_floor: float = 0.9,
        mem_gb: float = 17.8,
    ) -> FakeRun:
        """A LoRA run; `running=False` makes one that already logged all `steps` and ended."""
        every_ms = max(1, round((step_every_s or self.step_every_s) * 1000))
        start_ms = round(start_s * 1000) if start_s is not None else self._now_ms()
        run_id = hashlib.sha256(f"{self.seed}:{name}:{start_ms}".encode()).hexdigest()[:32]
        params = {"base_model": BASE_MODEL, "lora_r": str(lora_r), "lora_alpha": str(2 * lora_r),
                  "lora_dropout": "0.05", "learning_rate": learning_rate, "epochs": "3",
                  "dataset": "yahma/alpaca-cleaned", "max_steps": str(steps)}  # fmt: skip
        tags = {"mlflow.user": self.user, "mlflow.runName": name, "mlflow.source.type": "LOCAL",
                "mlflow.source.name": "train_lora.py", "host": "training-vm"}  # fmt: skip
        run = FakeRun(run_id, name, experiment_id or self.experiment_id, start_ms, every_ms, steps, params, tags,
                      user=self.user, loss_floor=loss_floor, mem_gb=mem_gb, seed=self.seed)  # fmt: skip
        if not running:
            run.ended_ms = start_ms + steps * every_ms + 45_000  # saving the adapter takes a while
        self.runs[run_id] = run
        return run

    def finish_running(self, status: str = "FINISHED") -> None:
        """Every run still going ends now (no more points), with `status` and an end time."""
        now = self._now_ms()
        for run in self.runs.values():
            if run.status(now) == "RUNNING":
                run.ended_ms, run.end_status = now, status

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    # --- answers ---------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        try:
            return await super().serve(request)
        except MlflowApiError as exc:
            return _json(exc.status, {"error_code": exc.code, "message": exc.message})

    async def _experiments_search(self, request: Request) -> Response:
        args = _args(request)
        view = str(args.get("view_type") or "ACTIVE_ONLY")
        found = (
            [] if view == "DELETED_ONLY" else sorted(self.experiments.values(), key=lambda e: -int(e["experiment_id"]))
        )
        page, token = _page(found, args, default=1000)
        return _json(200, {"experiments": page} | token)

    async def _runs_search(self, request: Request) -> Response:
        args = _args(request)
        ids = args.get("experiment_ids") or []
        if not isinstance(ids, list):
            raise invalid("Invalid value for parameter 'experiment_ids': must be a list of strings")
        now = self._now_ms()
        runs = [self._run_json(r, now) for r in self.runs.values() if r.experiment_id in {str(i) for i in ids}]
        if flt := args.get("filter"):
            runs = [r for r in runs if _matches(str(flt), lambda k, r=r: _run_field(r, k))]
        runs = _order(runs, args.get("order_by") or [])
        page, token = _page(runs, args, default=1000)
        return _json(200, ({"runs": page} if page else {}) | token)

    async def _runs_get(self, request: Request) -> Response:
        return _json(200, {"run": self._run_json(self._run(request.query), self._now_ms())})

    async def _get_history(self, request: Request) -> Response:
        run = self._run(request.query)
        key = request.query.get("metric_key")
        if not key:
            raise invalid("Missing value for required parameter 'metric_key'. See the API docs for more information")
        points = run.points(key, self._now_ms())
        if "max_results" not in request.query:
            return _json(200, {"metrics": points} if points else {})
        page, token = _page(points, request.query, default=1000)
        return _json(200, ({"metrics": page} if page else {}) | token)

    def _run(self, query: Mapping[str, str]) -> FakeRun:
        run_id = query.get("run_id") or query.get("run_uuid")
        if not run_id:
            raise invalid("Missing value for required parameter 'run_id'. See the API docs for more information")
        run = self.runs.get(run_id)
        if run is None:
            raise not_found(f"Run with id={run_id} not found")
        return run

    def _run_json(self, run: FakeRun, now: int) -> dict[str, Any]:
        info: dict[str, Any] = {"run_uuid": run.run_id, "experiment_id": run.experiment_id, "run_name": run.name,
                                "user_id": run.user, "status": run.status(now), "start_time": run.start_ms}  # fmt: skip
        if (end := run.end_ms(now)) is not None:
            info["end_time"] = end
        info |= {"artifact_uri": f"mlflow-artifacts:/{run.experiment_id}/{run.run_id}/artifacts",
                 "lifecycle_stage": "active", "run_id": run.run_id}  # fmt: skip
        data: dict[str, Any] = {}
        if latest := run.latest(now):
            data["metrics"] = latest
        data["params"] = [{"key": k, "value": v} for k, v in run.params.items()]
        data["tags"] = [{"key": k, "value": v} for k, v in run.tags.items()]
        return {"info": info, "data": data, "inputs": {}}


# --- the wire: arguments, paging, filters, order -------------------------------------------


def _json(status: int, payload: Any) -> Response:
    body = json.dumps(payload, indent=2, allow_nan=False).encode()
    return Response(status, body, {"Content-Type": "application/json"})


def _args(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    try:
        body = request.json()
    except ValueError:
        raise MlflowApiError(400, "MALFORMED_REQUEST", "Malformed request: the body is not JSON") from None
    return body if isinstance(body, dict) else {}


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: Any) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(str(token), validate=True))["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid(f"Invalid page token, could not base64-decode or parse: {token!r}") from None
    if not isinstance(offset, int) or offset < 0:
        raise invalid(f"Invalid page token, the offset must be a non-negative integer: {offset!r}")
    return offset


def _page(items: list[Any], args: Mapping[str, Any], *, default: int) -> tuple[list[Any], dict[str, str]]:
    """One page by offset; a token only when rows exist past it (MLflow's SQL store)."""
    raw = args.get("max_results", default)
    try:
        size = int(raw)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {raw!r} for parameter 'max_results' supplied") from None
    if not 0 < size <= _MAX_SEARCH:
        raise invalid(f"Invalid value {size} for parameter 'max_results' supplied. It must be at most {_MAX_SEARCH}")
    start = _offset(args.get("page_token"))
    end = start + size
    return items[start:end], ({"next_page_token": page_token(end)} if end < len(items) else {})


_CLAUSE = re.compile(r"\s*([\w.`\"]+)\s*(=|!=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*(?:AND\s+|$)", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"^(attributes?|attr|run)\.")


def _matches(text: str, lookup: Callable[[str], Any]) -> bool:
    position, clauses = 0, []
    while position < len(text):
        found = _CLAUSE.match(text, position)
        if found is None:
            raise invalid(f"Invalid filter '{text}': could not parse it at character {position}")
        clauses.append(found.groups())
        position = found.end()
    for key, op, expected in clauses:
        value, expected = lookup(key.replace("`", "").replace('"', "")), expected.replace("''", "'")
        if op.upper() in ("LIKE", "ILIKE"):
            pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in expected)
            flags = re.IGNORECASE | re.DOTALL if op.upper() == "ILIKE" else re.DOTALL
            if value is None or not re.fullmatch(pattern, str(value), flags):
                return False
        elif (value is not None and str(value) == expected) != (op == "="):
            return False
    return True


def _run_field(run: dict[str, Any], key: str) -> Any:
    """A run's value for a filter or order key: attributes, tags.K, params.K, metrics.K."""
    kind, _, name = key.partition(".")
    data = run["data"]
    if kind in ("tags", "tag", "params", "param", "metrics", "metric") and name:
        field_name = {"tag": "tags", "param": "params", "metric": "metrics"}.get(kind, kind)
        found = {i["key"]: i["value"] for i in data.get(field_name, [])}
        return found.get(name)
    attribute = _ATTRIBUTE.sub("", key)
    if attribute in ("status", "run_name", "run_id", "user_id", "start_time", "end_time"):
        return run["info"].get(attribute)
    raise invalid(f"Invalid attribute key '{attribute}' specified")


def _order(runs: list[dict[str, Any]], order_by: list[str]) -> list[dict[str, Any]]:
    """Sort by each clause (last clause first, stable); missing values last; default start_time DESC."""
    clauses = [str(c).split() for c in order_by] or [["start_time", "DESC"]]
    runs = sorted(runs, key=lambda r: r["info"]["run_id"])
    for words in reversed(clauses):
        if not words or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise invalid(f"Invalid order_by clause '{' '.join(words)}'")
        descending = len(words) == 2 and words[1].upper() == "DESC"
        present = [r for r in runs if _run_field(r, words[0]) is not None]
        missing = [r for r in runs if _run_field(r, words[0]) is None]
        present.sort(key=lambda r: _sortable(_run_field(r, words[0])), reverse=descending)
        runs = present + missing
    return runs


def _sortable(value: Any) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


__all__ = ["EXPERIMENT", "METRICS", "FakeMlflow", "FakeRun", "page_token", "wire_value"]

"""The training script's side of the real-server tests: it logs through MLflow's own REST API
(runs/create, runs/log-batch, runs/update), as mlflow's client does, while the console reads."""

from __future__ import annotations

import itertools
import time

import httpx

_names = itertools.count()


class Script:
    """The training script's side: logs through the REST API, as mlflow's own client does."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url + "/api/2.0/mlflow", timeout=30)
        self.clock = int(time.time() * 1000)

    async def post(self, path: str, body: dict) -> dict:
        response = await self.http.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def experiment(self) -> str:
        name = f"lora-{next(_names)}-{time.monotonic_ns()}"
        return (await self.post("/experiments/create", {"name": name}))["experiment_id"]

    async def run(self, experiment_id: str, name: str, **params: str) -> str:
        body = {"experiment_id": experiment_id, "run_name": name, "start_time": self.tick(), "user_id": "op"}
        run_id = (await self.post("/runs/create", body))["run"]["info"]["run_id"]
        if params:
            await self.post(
                "/runs/log-batch", {"run_id": run_id, "params": [{"key": k, "value": v} for k, v in params.items()]}
            )
        return run_id

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    async def log(self, run_id: str, key: str, steps: range, value=lambda step: 1.0 / (step + 1)) -> None:
        for start in range(0, len(steps), 1000):  # log-batch takes at most 1000 metrics
            chunk = steps[start : start + 1000]
            metrics = [{"key": key, "value": value(s), "timestamp": self.tick(), "step": s} for s in chunk]
            await self.post("/runs/log-batch", {"run_id": run_id, "metrics": metrics})

    async def end(self, run_id: str, status: str = "FINISHED") -> None:
        await self.post("/runs/update", {"run_id": run_id, "status": status, "end_time": self.tick()})

    async def aclose(self) -> None:
        await self.http.aclose()

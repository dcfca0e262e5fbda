"""What an `MlflowClient` sent and got, request by request (an httpx response hook), for the
tests that count a tail's requests, bytes and points."""

from __future__ import annotations

from typing import NamedTuple

import httpx


class Call(NamedTuple):
    path: str
    """After `/api/2.0/mlflow/`: `runs/get`, `metrics/get-history`, …"""
    params: dict[str, str]
    size: int
    """Bytes of the answer's body."""
    points: int
    """Metric points in the answer."""


class Wire:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        try:
            points = len(response.json().get("metrics", []))
        except (ValueError, AttributeError):
            points = 0
        path = response.request.url.path.rsplit("/mlflow/", 1)[-1]
        self.calls.append(Call(path, dict(response.request.url.params), len(response.content), points))

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls

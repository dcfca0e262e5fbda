"""`TelemetrySnapshot`: eager from finished hosts, or lazy (the hub's): a host is built when read."""

from __future__ import annotations

from datetime import UTC, datetime

from aiconsole.domain.gpu import GpuSample
from aiconsole.domain.gpu_levels import Level
from aiconsole.domain.health import HealthState, ServiceHealth
from aiconsole.domain.telemetry import FeedState, GpuView, HostOutline, HostTelemetry, TelemetrySnapshot

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def host(name: str, *indices: int) -> HostTelemetry:
    views = tuple(
        GpuView(GpuSample(i, f"GPU-{i}", "RTX 4090", 50.0, 1.0, 24564.0, 40.0, 200.0, 450.0, AT), Level.OK, Level.OK, False, 0.0)
        for i in indices
    )
    service = ServiceHealth("ollama", "ollama", "http://127.0.0.1:11434", HealthState.UP)
    return HostTelemetry(name, FeedState.LIVE if views else FeedState.OFF, gpus=views, services=(service,))


def test_a_lazy_snapshot_builds_a_host_when_read_and_only_once() -> None:
    hosts = {name: host(name, 0, 1) for name in ("a", "b", "c")}
    built: list[str] = []

    def build(name: str) -> HostTelemetry:
        built.append(name)
        return hosts[name]

    snapshot = TelemetrySnapshot.lazy(AT, [HostOutline.of(h) for h in hosts.values()], build)
    assert [o.host for o in snapshot.outlines] == ["a", "b", "c"] and built == []
    assert snapshot.outline("b").gpu_indices == (0, 1) and snapshot.outline("b").services == hosts["b"].services
    assert snapshot.host("b") is hosts["b"] and snapshot.host("b") is hosts["b"]
    assert snapshot.host("nobody") is None
    assert built == ["b"], "one host read, one built; an unknown name builds nothing"
    assert snapshot.hosts == tuple(hosts.values()) and built == ["b", "a", "c"]
    assert snapshot == TelemetrySnapshot(AT, tuple(hosts.values()))


def test_an_eager_snapshot_outlines_its_hosts() -> None:
    snapshot = TelemetrySnapshot(AT, (host("a", 0, 3), host("off")))
    assert [(o.host, o.state, o.gpu_indices) for o in snapshot.outlines] == [
        ("a", FeedState.LIVE, (0, 3)), ("off", FeedState.OFF, ()),
    ]  # fmt: skip
    assert snapshot.host("a") is snapshot.hosts[0] and snapshot.host("x") is None
    assert TelemetrySnapshot(AT).hosts == () and TelemetrySnapshot(AT).outlines == ()

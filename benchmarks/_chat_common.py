"""Shared by benchmarks/chat.py and its helpers: the reply text, the plan, the server's knobs,
the reading loop and the figures made of what was recorded.

Times on both sides of the loopback are `time.monotonic()`: CLOCK_MONOTONIC is one clock for
every process of the machine, so the server's send times and the console's arrival and frame
times can be subtracted.
"""

from __future__ import annotations

import json
import resource
import statistics
import urllib.request
from dataclasses import asdict, dataclass

SECTION = """\
## {n}. Choosing a GPU for a {size}B model

A {size}B model at 4-bit quantisation needs about **{gb} GB** of VRAM for the weights, plus the
KV cache, which grows with the context length. Here is how the options compare:

| GPU | VRAM | Fits {size}B q4? | Price per hour |
|-----|------|--------------|----------------|
| RTX 4090 | 24 GB | {fits} | $0.35 |
| A6000 | 48 GB | yes | $0.55 |
| H100 80GB | 80 GB | yes, long context | $2.20 |

To check what is loaded, run:

```bash
ollama ps
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
```

Things to keep in mind:

1. **Context length** costs memory: a 32k context adds several GB.
2. *Partial offload* works, but tokens per second drop sharply.
3. Keep the model warm with `keep_alive` so the first token comes fast.

A small helper to estimate the KV cache:

```python
def kv_cache_gb(layers: int, heads: int, head_dim: int, context: int, bytes_per: int = 2) -> float:
    \"\"\"Keys and values for every layer, head and position.\"\"\"
    return 2 * layers * heads * head_dim * context * bytes_per / 1e9


print(f"{{kv_cache_gb(80, 8, 128, 32_768):.1f}} GB")
```

> Tip: measure with your own prompts; published figures assume short contexts.

- See the [Ollama FAQ](https://github.com/ollama/ollama/blob/main/docs/faq.md) for details.
- Quantisations below q4 lose quality quickly on reasoning tasks, and section {n} ends here.

"""


def reply_text(tokens: int) -> str:
    """Realistic Markdown (headings, paragraphs, a table, lists, code, a quote, links),
    sections repeated with their numbers changed, cut to exactly `tokens` of the fake's tokens."""
    from aiconsole.demo.ollama_wire import tokens as split

    parts: list[str] = []
    count, n = 0, 0
    while count < tokens:
        n += 1
        size = (7, 13, 34, 70)[n % 4]
        section = SECTION.format(n=n, size=size, gb=round(size * 0.6), fits="yes" if size < 30 else "no (split)")
        parts.append(section)
        count += len(split(section))
    return "".join(split("".join(parts))[:tokens])


@dataclass(frozen=True)
class Scenario:
    name: str
    tokens: int
    rate: float | None
    """Tokens a second; None: as fast as the server writes."""
    history: int = 0
    """Earlier replies (and their prompts) in the conversation."""
    kind: str = "stream"
    """stream (CPU, lag), speed (tokens/s absorbed) or cost (cost per screen update)."""
    loop: str = "console"
    """The client's event loop: the console's (network wakeups 40 ms apart) or asyncio's."""


WARM_UP = Scenario("warm-up", 800, None)
"""A reply each client reads first, not measured: the first one pays for imports (Pygments lexers...)."""


def plan(quick: bool) -> list[Scenario]:
    if quick:
        return [
            Scenario("paced 300/s", 1500, 300.0),
            Scenario("burst 2000/s", 6000, 2000.0),
            Scenario("max speed", 8000, None, kind="speed"),
            Scenario("max speed, asyncio loop", 8000, None, kind="speed", loop="asyncio"),
            Scenario("cost 1k", 1000, 1000.0, kind="cost"),
            Scenario("cost 10k", 10_000, 1000.0, kind="cost"),
            Scenario("cost 1k, 40 earlier", 1000, 1000.0, history=40, kind="cost"),
        ]
    return [
        Scenario("paced 300/s", 6000, 300.0),
        Scenario("burst 2000/s", 16_000, 2000.0),
        *[Scenario("max speed", 20_000, None, kind="speed")] * 3,
        *[Scenario("max speed, asyncio loop", 20_000, None, kind="speed", loop="asyncio")] * 3,
        *[Scenario("cost 1k", 1000, 1000.0, kind="cost")] * 5,
        Scenario("cost 10k", 10_000, 1000.0, kind="cost"),
        *[Scenario("cost 1k, 40 earlier", 1000, 1000.0, history=40, kind="cost")] * 5,
    ]


def plan_to_json(scenarios: list[Scenario]) -> str:
    return json.dumps([asdict(s) for s in scenarios])


def plan_from_json(text: str) -> list[Scenario]:
    return [Scenario(**item) for item in json.loads(text)]


# --- talking to the benchmark's server (see _chat_server.py) ------------------------------------


def configure(url: str, scenario: Scenario) -> None:
    """The next reply: `scenario.tokens` tokens at `scenario.rate`."""
    body = json.dumps({"tokens": scenario.tokens, "rate": scenario.rate}).encode()
    request = urllib.request.Request(url + "/bench/reply", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def send_times(url: str) -> list[float]:
    """When the server wrote each token of the last reply (monotonic seconds)."""
    with urllib.request.urlopen(url + "/bench/sends", timeout=30) as answer:
        return json.loads(answer.read())


def cpu_s() -> float:
    """This process's CPU (all threads: the console's input and writer threads too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- figures -----------------------------------------------------------------------------------


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1], "n": len(ordered)}


def reader_figures(started: float, ended: float, cpu: float, arrivals: list[float], sends: list[float]) -> dict:
    """What the reader saw: tokens, wall time to the last piece, tokens/s, CPU share from the
    request to `ended` (the reply handled), its delay behind the server (arrival - send, per piece)."""
    wall = (arrivals[-1] if arrivals else ended) - started
    delays = [a - s for a, s in zip(arrivals, sends)] if len(sends) == len(arrivals) else []
    return {
        "tokens": len(arrivals), "wall_s": wall, "tokens_per_s": len(arrivals) / wall if wall > 0 else 0.0,
        "cpu_s": cpu, "cpu_pct": 100 * cpu / (ended - started),
        "reader_delay": quantiles(delays), "sends_matched": len(sends) == len(arrivals),
    }  # fmt: skip


def lag_figures(frames: list[tuple[float, int]], arrivals: list[float], sends: list[float]) -> dict:
    """For each frame that showed new pieces: frame time minus the newest shown piece's arrival
    at the reader (the issue's lag), and minus its send time at the server (lag behind the stream)."""
    by_arrival, by_send, shown = [], [], 0
    for at, painted in frames:
        if painted > shown and painted <= len(arrivals):
            by_arrival.append(at - arrivals[painted - 1])
            if len(sends) >= painted:
                by_send.append(at - sends[painted - 1])
            shown = painted
    return {"lag": quantiles(by_arrival), "lag_behind_server": quantiles(by_send), "frames_with_news": len(by_arrival)}


def run_on_loop(loop: str, main):
    """`main` on the console's loop (network wakeups spaced 40 ms apart) or asyncio's own."""
    if loop == "asyncio":
        import asyncio

        return asyncio.run(main)
    from aiconsole.services.event_loop import run

    return run(main)

"""How fast this machine is right now, as one figure a benchmark prints beside its own.

The machine these benchmarks run on changes speed from hour to hour (a shared virtual
machine). A fixed piece of pure-Python work, timed when a benchmark starts and when it
ends, lets a reader compare figures from different runs: divide by it.
"""

from __future__ import annotations

import json
import statistics
import time

_DOCUMENT = {
    "plan": "0123456789abcdef" * 2,
    "steps": [{"idx": n, "state": "pending", "input": {"package": f"p{n}"}} for n in range(20)],
}


def python_work_ms(repeat: int = 7) -> float:
    """Median milliseconds of a fixed mix of JSON, dict and string work."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(300):
            text = json.dumps(_DOCUMENT)
            loaded = json.loads(text)
            sorted(f"{step['idx']}:{step['state']}" for step in loaded["steps"])
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)

"""Settings of the whole process for mcoflow's long-running commands (executor, serve,
agent); libraries never change them, only these entry points."""

from __future__ import annotations

import gc

# CPython's default collects the youngest generation every 700 allocations. A busy
# executor or agent allocates many short-lived objects per message while it keeps tens
# of thousands of long-lived ones (suspended steps' futures, tasks, caches), so with the
# default it spent about an eighth of its CPU in collections, most of them full ones
# over the same long-lived objects (benchmarks/fleet.py (b) on 10,000 hosts: 4.7 s of
# 35 s in the executor, 2 s per agent). Reference cycles are still collected, less often.
GC_THRESHOLDS = (10_000, 20, 50)


def tune_gc() -> None:
    """Collect what start-up left, keep the rest out of later collections (it lives as
    long as the process), and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

"""Settings of the whole process for mcoflow's long-running commands (executor, serve,
agent); libraries never change them, only these entry points."""

from __future__ import annotations

import gc

# A busy executor or agent allocates many short-lived objects per message beside tens of
# thousands of long-lived ones, so CPython's default (every 700 allocations) spends much
# of its CPU collecting the same long-lived objects (docs/performance.md); cycles are
# still collected, less often.
GC_THRESHOLDS = (10_000, 20, 50)


def tune_gc() -> None:
    """Collect what start-up left, keep the rest out of later collections (it lives as
    long as the process), and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

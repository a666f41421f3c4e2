"""How many intra-op threads torch should use, given what else the machine is running.

On a busy machine OpenMP threads wait on each other: with a load average of ~10 on 2 cores, one model call
took 3.9-5.0 s with 2 threads and 0.31-0.47 s with 1. So the default is the cores left idle by the recent
load (at least 1), divided among the jobs this process runs at once.
"""

from __future__ import annotations

import os

import torch


def idle_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores not taken by the 1-minute load average (at least 1)."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every platform
            load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def auto_threads(concurrent_jobs: int = 1, cores: int | None = None, load: float | None = None) -> int:
    """Threads per job for ``concurrent_jobs`` jobs sharing the idle cores (at least 1)."""
    return max(1, idle_cores(cores, load) // max(1, concurrent_jobs))


def configure_threads(requested: int | None = None, concurrent_jobs: int = 1) -> int:
    """Set torch's intra-op threads to ``requested`` or :func:`auto_threads`; returns the number set."""
    n = requested if requested and requested > 0 else auto_threads(concurrent_jobs)
    torch.set_num_threads(n)
    return n

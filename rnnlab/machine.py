"""How many CPU threads rnnlab's commands use: the cores that other processes leave free.

torch starts one thread per core, and OpenMP threads spin while they wait for each other. On a
quiet machine that is the fastest; on a busy one (a laptop is never quiet) every parallel region
waits for a thread that the kernel has given to another process, and training ran 3-12 times
slower with one or two competing processes on 2 cores (docs/PERFORMANCE.md, "Under load").
Passive waiting (``OMP_WAIT_POLICY=PASSIVE``) fixes the busy case but costs a quarter of the speed
on a quiet machine, because the per-time-step matrix products of a recurrent network are small
and a sleeping thread wakes up slowly. So rnnlab keeps torch's threads and spinning, and uses
only as many threads as there are cores that other processes leave free:

* :class:`ThreadPolicy` measures the CPU time that other processes used (``/proc/stat`` minus
  this process's own ``/proc/self/stat``) over the last few seconds, and sets
  ``torch.set_num_threads`` to the free cores (at least 1, at most torch's own default or
  ``OMP_NUM_THREADS``). The trainer asks it after every step (a clock check; ``/proc`` is read
  every :data:`INTERVAL_S` seconds), so a run adapts when a competitor starts or stops.
* Commands that run a model once (``sample``, ``predict``, ...) choose from the load average
  when they start (:func:`initial_threads`).

``--threads N`` fixes the count (no policy); the environment variable ``RNNLAB_THREADS=torch``
keeps torch's default, also without a policy (for benchmarks). Without ``/proc`` (not Linux)
the policy does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: seconds between two measurements of the other processes' CPU use
INTERVAL_S = 2.0
#: a core counts as busy when other processes use more than this share of it
BUSY_SHARE = 0.25

_PROC = Path("/proc")


def enabled() -> bool:
    """Whether rnnlab chooses the thread count (not when ``RNNLAB_THREADS=torch``)."""
    return os.environ.get("RNNLAB_THREADS", "").lower() != "torch" and (_PROC / "stat").exists()


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _read_stat(cpus: list[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies of ``cpus`` since boot, from ``/proc/stat``."""
    try:
        lines = (_PROC / "stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cpus}
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if name not in wanted:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return (busy, total) if total else None


def _read_self() -> int | None:
    """Jiffies of CPU time this process has used (all its threads)."""
    try:
        text = (_PROC / "self" / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime


def free_cores(load: float, cores: int) -> int:
    """The cores left when others keep ``load`` cores busy: at least 1, at most ``cores``."""
    return max(1, min(cores, int(cores - load + BUSY_SHARE)))


def initial_threads(ceiling: int) -> int:
    """Threads for a command that starts now: the cores that the 1-minute load average leaves
    free (this process has not run yet, so the load is the others'), at most ``ceiling``."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return ceiling
    return min(ceiling, free_cores(load, len(_cpus())))


class ThreadPolicy:
    """Keeps torch's thread count at the cores other processes leave free (module docstring).

    Args:
        ceiling: the most threads to use (default: torch's current count).
        interval: seconds between measurements.
    """

    def __init__(self, ceiling: int | None = None, interval: float = INTERVAL_S) -> None:
        import torch

        self.torch = torch
        self.ceiling = ceiling or torch.get_num_threads()
        self.interval = interval
        self.cpus = _cpus()
        self.threads = torch.get_num_threads()
        self.changes = 0
        self._mark: tuple[float, tuple[int, int], int] | None = None
        self._take_mark()

    def _take_mark(self) -> None:
        stat, own = _read_stat(self.cpus), _read_self()
        self._mark = (time.monotonic(), stat, own) if stat and own is not None else None

    def others(self) -> float | None:
        """Cores' worth of CPU that other processes used since the last measurement."""
        if self._mark is None:
            return None
        _, (busy0, total0), own0 = self._mark
        self._take_mark()
        if self._mark is None:
            return None
        _, (busy1, total1), own1 = self._mark
        elapsed = (total1 - total0) / len(self.cpus)  # jiffies of one core
        if elapsed <= 0:
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / elapsed

    def update(self) -> int:
        """Measure (every ``interval`` seconds) and apply; returns the thread count."""
        if self._mark is None or time.monotonic() - self._mark[0] < self.interval:
            return self.threads
        load = self.others()
        if load is None:
            return self.threads
        wanted = min(self.ceiling, free_cores(load, len(self.cpus)))
        if wanted != self.threads:
            self.torch.set_num_threads(wanted)
            self.threads = wanted
            self.changes += 1
        return self.threads


def choose_threads(threads: int | None) -> ThreadPolicy | None:
    """Apply ``--threads``: a fixed count (no policy), or, by default, the free cores now and
    a :class:`ThreadPolicy` that the trainer updates (None when disabled)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
        return None
    if not enabled():
        return None
    ceiling = torch.get_num_threads()
    torch.set_num_threads(initial_threads(ceiling))
    return ThreadPolicy(ceiling)


__all__ = [
    "BUSY_SHARE",
    "INTERVAL_S",
    "ThreadPolicy",
    "choose_threads",
    "enabled",
    "free_cores",
    "initial_threads",
]

"""``rnnlab bench``: tokens/s and peak memory of every cell against torch.nn, in one process.

For each grid point (N batch, T time, H hidden; input size D = H, float32, time-major, one layer)
every model runs forward (under ``torch.no_grad``) and forward+backward (gradients for the
input and every parameter, a fixed random output gradient). All models are warmed up first, then
timed round-robin (repeat r of every model before repeat r + 1 of any), so that other load on the
machine falls on all of them alike; each figure is the median of the repeats and is reported as
a ratio to ``torch.nn.LSTM`` in the same run. Achieved GFLOP/s counts the GEMMs only
(``2 * (|W_ih| + |W_hh|)`` per token forward, twice that backward) against the measured speed of
one large float32 GEMM. Peak memory is the growth of the process's peak resident set during one
forward+backward (Linux only), measured after all timings with glibc's mmap threshold lowered so
that freed buffers leave the process.

Example::

    >>> result = run_bench(BenchConfig(grid=((8, 20, 32),), repeats=1, memory=False))
    >>> print(format_tables(result))
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from rnnlab.analysis.benchmodels import (
    BASELINE,
    NaiveLSTM,
    execution_path,
    factory_of,
    gemm_flops_per_token,
    models,
    resolve_models,
)
from rnnlab.core import fast
from rnnlab.errors import RnnlabError

DEFAULT_GRID: tuple[tuple[int, int, int], ...] = ((64, 100, 512), (32, 100, 128), (8, 1000, 256))
QUICK_GRID: tuple[tuple[int, int, int], ...] = ((32, 100, 128),)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``models`` None means all of :func:`models`; the baseline is always run."""

    grid: tuple[tuple[int, int, int], ...] = DEFAULT_GRID
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    memory: bool = True
    models: tuple[str, ...] | None = None
    seed: int = 0
    #: False runs everything as if rnnlab had no fast path (the "before" figures); rnnlab's
    #: layers are built with backend "torch" where it can run them, else "reference".
    fast: bool = True


@dataclass
class Measurement:
    """One model at one grid point; ratios are to :data:`BASELINE` at the same point."""

    model: str
    path: str
    batch: int
    time: int
    hidden: int
    fwd_tokens_per_s: float
    fwdbwd_tokens_per_s: float
    fwd_ratio: float = float("nan")
    fwdbwd_ratio: float = float("nan")
    fwdbwd_gflops: float = float("nan")
    peak_share: float = float("nan")
    peak_mem_bytes: int | None = None
    mem_ratio: float | None = None
    fwd_times_s: list[float] = field(default_factory=list)
    fwdbwd_times_s: list[float] = field(default_factory=list)


def measure_gemm_peak(size: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of one large float32 GEMM (size x size x size), median of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


class _Case:
    """One model with its input and output gradient at one grid point."""

    def __init__(self, name: str, factory: Callable[[int], nn.Module], shape: tuple[int, ...]):
        N, T, H = shape
        self.name = name
        self.model = factory(H)
        self.x = torch.randn(T, N, H, requires_grad=True)
        with torch.no_grad():
            out, _ = self.model(self.x)
        self.grad = torch.randn_like(out)
        self.path = execution_path(self.model, self.x)

    def forward(self) -> None:
        with torch.no_grad():
            self.model(self.x)

    def forward_backward(self) -> None:
        out, _ = self.model(self.x)
        out.backward(self.grad)
        self.x.grad = None
        for p in self.model.parameters():
            p.grad = None


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> dict:
    """Measure every model at every grid point; returns a JSON-serialisable dict."""
    log = log or (lambda message: None)
    for shape in config.grid:
        if len(shape) != 3 or any(not isinstance(v, int) or v < 1 for v in shape):
            raise RnnlabError(f"grid points are (batch, time, hidden) positive ints, got {shape}")
    if config.repeats < 1 or config.warmup < 0:
        raise RnnlabError(
            f"repeats must be >= 1 and warmup >= 0, got {config.repeats}, {config.warmup}"
        )
    threads = config.threads or torch.get_num_threads()
    table = resolve_models(config.models, fast=config.fast)
    fast_ok = fast.is_available()  # builds the kernels once, before anything is timed
    results: list[Measurement] = []
    with _threads(threads):
        peak = measure_gemm_peak()
        for shape in config.grid:
            torch.manual_seed(config.seed)
            cases = [_Case(name, factory, shape) for name, factory in table.items()]
            log(f"grid point (N, T, H) = {shape}: {len(cases)} models")
            for case in cases:
                for _ in range(config.warmup):
                    case.forward()
                    case.forward_backward()
            fwd: dict[str, list[float]] = {c.name: [] for c in cases}
            fb: dict[str, list[float]] = {c.name: [] for c in cases}
            for _ in range(config.repeats):
                for case in cases:
                    fwd[case.name].append(_timed(case.forward))
                    fb[case.name].append(_timed(case.forward_backward))
            N, T, H = shape
            for case in cases:
                tf, tb = statistics.median(fwd[case.name]), statistics.median(fb[case.name])
                m = Measurement(case.name, case.path, N, T, H, N * T / tf, N * T / tb)
                m.fwd_times_s, m.fwdbwd_times_s = fwd[case.name], fb[case.name]
                m.fwdbwd_gflops = 3 * gemm_flops_per_token(case.model) * N * T / tb / 1e9
                m.peak_share = m.fwdbwd_gflops / peak
                results.append(m)
            del cases
        if config.memory:
            _measure_memory(config, table, results, log)
    _add_ratios(results)
    return {
        "rnnlab_bench": 1,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "threads": threads,
        "load_average": _load_average(),
        "fast_path": fast_ok and config.fast,
        "gemm_peak_gflops": peak,
        "config": asdict(config),
        "baseline": BASELINE,
        "results": [asdict(m) for m in results],
    }


def _add_ratios(results: list[Measurement]) -> None:
    base = {(m.batch, m.time, m.hidden): m for m in results if m.model == BASELINE}
    for m in results:
        b = base.get((m.batch, m.time, m.hidden))
        if b is None:
            continue
        m.fwd_ratio = m.fwd_tokens_per_s / b.fwd_tokens_per_s
        m.fwdbwd_ratio = m.fwdbwd_tokens_per_s / b.fwdbwd_tokens_per_s
        if m.peak_mem_bytes is not None and b.peak_mem_bytes:
            m.mem_ratio = m.peak_mem_bytes / b.peak_mem_bytes


# -- peak memory (Linux, glibc) -----------------------------------------------------------
def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or not os.path.exists("/proc/self/clear_refs"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def peak_memory(fn: Callable[[], None], libc: ctypes.CDLL) -> int:
    """Growth of the peak resident set while ``fn`` runs, in bytes."""
    gc.collect()
    libc.malloc_trim(0)
    base = _proc_status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    fn()
    return max(0, _proc_status("VmHWM:") - base)


def _measure_memory(
    config: BenchConfig,
    table: dict[str, Callable[[int], nn.Module]],
    results: list[Measurement],
    log: Callable[[str], None],
) -> None:
    """Peak memory of every model at every grid point, each in a fresh Python process.

    In one long process the figure depends on what ran before (the heap's fragmentation and
    per-thread arenas left by earlier models moved the 2-thread figure of the same model by up
    to 45%); alone in a process it is reproducible to 0.1 MiB. Processes run two at a time:
    resident memory is per process, so they do not disturb each other's figure.
    """
    if _libc() is None:
        log("peak memory: not measured (needs Linux and glibc)")
        return
    threads = config.threads or torch.get_num_threads()
    jobs = [(name, shape) for shape in config.grid for name in table]
    log(f"peak memory: {len(jobs)} fresh processes")

    def measure(job: tuple[str, tuple[int, int, int]]) -> int | None:
        name, (N, T, H) = job
        cmd = [
            sys.executable, "-m", "rnnlab.analysis.bench", "--peak-memory", name,
            str(N), str(T), str(H), str(threads), str(config.seed), "1" if config.fast else "0",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines or not lines[-1].isdigit():
            log(f"peak memory of {name} at {(N, T, H)}: failed ({done.stderr.strip()[-200:]})")
            return None
        return int(lines[-1])

    by_key = {(m.model, m.batch, m.time, m.hidden): m for m in results}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for (name, shape), peak in zip(jobs, pool.map(measure, jobs)):
            by_key[(name, *shape)].peak_mem_bytes = peak


def _peak_memory_main(argv: list[str]) -> None:
    """``python -m rnnlab.analysis.bench --peak-memory NAME N T H THREADS SEED FAST``: print the
    peak memory growth of one forward+backward (after one untimed warm-up), in bytes."""
    name, N, T, H, threads, seed, use_fast = argv
    torch.set_num_threads(int(threads))
    libc = _libc()
    if libc is None:
        raise SystemExit("needs Linux and glibc")
    libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: big buffers are mmapped, freed for real
    if fast.is_available():
        fast.set_cache_limit(0)  # the same: the call's own buffers count, not the warm-up's
    factory = factory_of(name, models(fast=use_fast == "1"))
    if factory is None:
        raise SystemExit(f"unknown model {name}")
    torch.manual_seed(int(seed))
    case = _Case(name, factory, (int(N), int(T), int(H)))
    case.forward_backward()  # warm-up: thread pools, GEMM buffers, the fast path's load
    print(peak_memory(case.forward_backward, libc))


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(v, 2) for v in os.getloadavg()]
    return None


# -- report ---------------------------------------------------------------------------------
def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.2f}x"


def format_tables(result: dict) -> str:
    """One table per grid point, every figure also as a ratio to torch.nn.LSTM."""
    lines = [
        f"rnnlab bench: torch {result['torch_version']}, {result['threads']} threads, "
        f"{result['cpu']}; fast path {'on' if result['fast_path'] else 'OFF'}",
        f"large-GEMM peak {result['gemm_peak_gflops']:.1f} GFLOP/s; ratios are to {BASELINE} "
        "in this run; median of "
        f"{result['config']['repeats']} repeats after {result['config']['warmup']} warm-up",
    ]
    rows = [r for r in result["results"]]
    shapes = list(dict.fromkeys((r["batch"], r["time"], r["hidden"]) for r in rows))
    header = (
        f"{'model':<16} {'path':<11} {'fwd tok/s':>10} {'fwd':>6} {'f+b tok/s':>10} {'f+b':>6} "
        f"{'GFLOP/s':>8} {'%peak':>6} {'peak MiB':>9} {'mem':>6}"
    )
    for N, T, H in shapes:
        lines += ["", f"(batch, time, hidden) = ({N}, {T}, {H})", header, "-" * len(header)]
        for r in rows:
            if (r["batch"], r["time"], r["hidden"]) != (N, T, H):
                continue
            mem = r["peak_mem_bytes"]
            lines.append(
                f"{r['model']:<16} {r['path']:<11} {r['fwd_tokens_per_s']:>10.0f} "
                f"{_fmt_ratio(r['fwd_ratio']):>6} {r['fwdbwd_tokens_per_s']:>10.0f} "
                f"{_fmt_ratio(r['fwdbwd_ratio']):>6} {r['fwdbwd_gflops']:>8.1f} "
                f"{100 * r['peak_share']:>5.1f}% "
                f"{'-' if mem is None else f'{mem / 2**20:.1f}':>9} {_fmt_ratio(r['mem_ratio']):>6}"
            )
    return "\n".join(lines)


__all__ = [
    "BASELINE",
    "DEFAULT_GRID",
    "QUICK_GRID",
    "BenchConfig",
    "Measurement",
    "NaiveLSTM",
    "execution_path",
    "format_tables",
    "gemm_flops_per_token",
    "measure_gemm_peak",
    "models",
    "peak_memory",
    "run_bench",
]


if __name__ == "__main__":
    if len(sys.argv) == 9 and sys.argv[1] == "--peak-memory":
        _peak_memory_main(sys.argv[2:])
    else:
        raise SystemExit(
            "usage: python -m rnnlab.analysis.bench --peak-memory NAME N T H THREADS SEED FAST"
        )

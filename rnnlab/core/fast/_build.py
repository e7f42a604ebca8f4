"""Build the C++ kernels at first use and load them (cached; safe under parallel test workers).

Built with ``torch.utils.cpp_extension.load`` against the torch that is running (building at
install time in an isolated environment would compile against a different torch), into
``$RNNLAB_CACHE`` or ``~/.cache/rnnlab``, one directory per torch version, Python version, CPU
capability and hash of the sources (copied there, so that checkouts at different paths share one
build). Later processes load the cached library in a fraction of a second. Without a compiler
(or ninja) :func:`load` returns False with one warning and the layers use the reference loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path

import torch

_SOURCES = ("ops.cpp", "cache.cpp", "simple.cpp", "gru.cpp", "lstm.cpp", "mut.cpp")
_HERE = Path(__file__).resolve().parent
_state: dict[str, object] = {}
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where the compiled library lives: ``$RNNLAB_CACHE`` or ``~/.cache/rnnlab``."""
    root = (
        os.environ.get("RNNLAB_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnlab"
    )
    return Path(root)


def _capability() -> str:
    """The vector instruction set to compile for: AVX2 where the CPU has it, else portable C++."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old or unusual builds
        cap = "DEFAULT"
    return "AVX2" if cap in ("AVX2", "AVX512") else "DEFAULT"


def _flags(capability: str) -> list[str]:
    flags = ["-O3", f"-DCPU_CAPABILITY={capability}"]
    if capability == "AVX2":
        flags += ["-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"]
    return flags


def _ninja_on_path() -> None:
    """cpp_extension calls ``ninja`` from PATH; the PyPI package's binary may not be on it."""
    candidates = [Path(sys.executable).parent]
    with contextlib.suppress(ImportError):
        import ninja

        candidates.insert(0, Path(ninja.BIN_DIR))
    path = os.environ.get("PATH", "")
    for c in candidates:
        if (c / "ninja").exists() and str(c) not in path.split(os.pathsep):
            os.environ["PATH"] = f"{c}{os.pathsep}{path}" if path else str(c)
            return


def load() -> bool:
    """Load (building once if needed) the extension; True if ``torch.ops.rnnlab_fast`` works."""
    if "ok" in _state:
        return bool(_state["ok"])
    with _lock:
        if "ok" not in _state:
            _state["ok"] = _try_load()
    return bool(_state["ok"])


def _try_load() -> bool:
    try:
        _load()
        return True
    except Exception as exc:  # no compiler, no ninja, a failed build: fall back, once, loudly
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        reason = (errors or lines or [type(exc).__name__])[0]
        warnings.warn(
            f"rnnlab.core.fast: C++ kernels unavailable ({reason[:200]}); "
            "using the reference loop (slower)",
            RuntimeWarning,
            stacklevel=4,
        )
        return False


def _load() -> None:
    from torch.utils import cpp_extension

    capability = _capability()
    version = torch.__version__.replace("+", "_")
    sources = {name: (_HERE / name).read_bytes() for name in (*_SOURCES, "kernels.h")}
    digest = hashlib.sha256(b"".join(sources[n] for n in sorted(sources))).hexdigest()[:12]
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    # One directory per torch, Python, instruction set and source version: checkouts at other
    # paths share a build, and two versions never rebuild over each other.
    build_dir = cache_dir() / "ext" / f"torch{version}-{py}-{capability.lower()}-{digest}"
    src_dir = build_dir / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    _ninja_on_path()
    # One process at a time builds or loads; flock is released even if a process is killed,
    # unlike cpp_extension's own lock file, which we clear when we hold the flock.
    with open(build_dir / "rnnlab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            stale = build_dir / "lock"
            if stale.exists():
                stale.unlink()
            for name, text in sources.items():
                target = src_dir / name
                if not target.exists() or target.read_bytes() != text:
                    target.write_bytes(text)
            cpp_extension.load(
                name="rnnlab_fast_kernels",
                sources=[str(src_dir / s) for s in _SOURCES],
                extra_cflags=_flags(capability),
                extra_include_paths=[str(src_dir)],
                build_directory=str(build_dir),
                is_python_module=False,
                verbose=bool(os.environ.get("RNNLAB_BUILD_VERBOSE")),
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if not hasattr(torch.ops.rnnlab_fast, "forward"):
        raise RuntimeError("the library loaded but registered no operators")

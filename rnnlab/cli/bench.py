"""``rnnlab bench``: speed and memory of every cell against torch.nn (see rnnlab.analysis.bench)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnlab.analysis.bench import (
    DEFAULT_GRID,
    QUICK_GRID,
    BenchConfig,
    format_tables,
    models,
    run_bench,
)
from rnnlab.errors import RnnlabError


def _grid_point(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected BATCH,TIME,HIDDEN (three positive integers), got {text!r}"
        )
    return values  # type: ignore[return-value]


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    """Add ``rnnlab bench``."""
    default = ", ".join(f"{n},{t},{h}" for n, t, h in DEFAULT_GRID)
    p = commands.add_parser(
        "bench",
        help="tokens/s and peak memory of every cell vs torch.nn",
        description=(
            "Forward and forward+backward tokens/s and peak memory of every cell and of "
            "torch.nn.LSTM/GRU/RNN and a naive Python-loop LSTM, at the same sizes, in one "
            "process; each figure also as a ratio to torch.nn.LSTM. "
            f"Default grid (batch,time,hidden): {default}."
        ),
    )
    p.add_argument(
        "--grid",
        type=_grid_point,
        action="append",
        metavar="N,T,H",
        help="a grid point (repeatable); default: the three above",
    )
    p.add_argument(
        "--quick", action="store_true", help=f"grid {QUICK_GRID[0]} only, 3 repeats (development)"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated model names (torch.nn.LSTM is always run); see --list; "
        "loop:VARIANT times that variant's reference loop (the same cell as a Python loop)",
    )
    p.add_argument("--list", action="store_true", help="print the model names and exit")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument(
        "--no-fast",
        action="store_true",
        help="run as if rnnlab had no fast path (reference loop, torch kernels): the 'before'",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print("\n".join(models()))
        print("loop:VARIANT (any variant above, on its reference loop)")
        return 0
    if args.repeats is not None and args.repeats < 1:
        raise RnnlabError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        raise RnnlabError(f"--threads must be >= 1, got {args.threads}")
    grid = tuple(args.grid) if args.grid else (QUICK_GRID if args.quick else DEFAULT_GRID)
    repeats = args.repeats or (3 if args.quick else 5)
    names = tuple(n.strip() for n in args.models.split(",") if n.strip()) if args.models else None
    config = BenchConfig(
        grid=grid,
        repeats=repeats,
        warmup=args.warmup,
        threads=args.threads,
        memory=not args.no_memory,
        models=names,
        fast=not args.no_fast,
    )
    result = run_bench(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_tables(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0

"""``rnnlab experiment NAME [--quick] [--out DIR] [--seeds N]``: run one of the experiments."""

from __future__ import annotations

import argparse

import torch


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    """Add ``rnnlab experiment``."""
    from rnnlab.experiments import EXPERIMENTS

    p = commands.add_parser(
        "experiment",
        help="run an experiment that measures one of the lectures' claims",
        description="Run an experiment; writes results.json, results.csv and PNG plots into "
        "--out and prints a short table. Experiments: " + ", ".join(EXPERIMENTS) + ".",
    )
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help=" | ".join(EXPERIMENTS))
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_const", const="quick", dest="setting",
        help="the quick setting (under 2 minutes on a laptop CPU)",
    )  # fmt: skip
    size.add_argument(
        "--setting", choices=("full", "quick", "test"), default="full",
        help="full (documented in docs/EXPERIMENTS.md, default), quick or test (seconds)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="output directory (default runs/experiments/NAME)")
    p.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default: the setting's)"
    )
    p.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: the models are tiny; more threads mostly add overhead)",
    )  # fmt: skip
    p.set_defaults(func=_run, setting="full")


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rnnlab.errors import RnnlabError
    from rnnlab.experiments import report, run_experiment

    if args.threads < 1:
        raise RnnlabError(f"--threads must be a positive integer, got {args.threads}")
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path("runs/experiments") / args.name
    print(f"running experiment {args.name} ({args.setting}) -> {out}", flush=True)
    result = run_experiment(args.name, args.setting, out, seeds=args.seeds)
    print(report(result, out))
    return 0

"""One process against N processes (torchrun, gloo on the CPU): the default character LM trained
for the same time with the same global batch and seed; training tokens/s and the validation loss.

Usage::

    python benchmarks/scaling.py [--budget 2m] [--nproc 2] [--out /tmp/scaling] [-- EXTRA FLAGS]

Runs one after the other (nothing else should run), each ``rnnlab train lm --time-budget
BUDGET``; the N-process run through ``python -m torch.distributed.run --standalone``. Prints a
Markdown table (docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path


def train(out: Path, budget: str, nproc: int, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    argv = ["train", "lm", "--time-budget", budget, "--out", str(out), "--no-progress"]
    argv += ["--sample", "0", *extra]
    if nproc == 1:
        command = [sys.executable, "-m", "rnnlab", *argv]
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "rnnlab", *argv,
        ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result = json.loads((out / "result.json").read_text())
    with open(out / "eval.csv", newline="") as f:
        evals = list(csv.DictReader(f))
    return {
        "processes": nproc,
        "steps": result["steps"],
        "seconds": result["elapsed"],
        "tokens_per_s": result["tokens_per_s"],
        "val_loss": float(evals[-1]["val_loss"]),
        "best_val_loss": result["best_val_loss"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="2m")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--out", default="/tmp/rnnlab-scaling")
    p.add_argument("extra", nargs="*", help="more flags for rnnlab train lm (after --)")
    args = p.parse_args()
    root = Path(args.out)
    rows = [train(root / f"p{n}", args.budget, n, args.extra) for n in (1, args.nproc)]
    print("| processes | steps | seconds | chars/s (training) | last val loss | best val loss |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['processes']} | {r['steps']} | {r['seconds']:.0f} | {r['tokens_per_s']:,.0f} "
            f"| {r['val_loss']:.4f} | {r['best_val_loss']:.4f} |"
        )
    (root / "scaling.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""rnnlab's default language-model recipe against the textbook one, side by side, at several
wall-clock budgets and seeds.

For every budget and seed it runs ``rnnlab train lm`` with its defaults and
``benchmarks/plain_lm.py --classic`` (a plain ``torch.nn.LSTM`` of the same size: Adam 2e-3
constant, windows of 100, batch 32, dropout 0.2 between the layers, clip 5, no warm-up) on the
same split:

* ``--threads 1``: both at the same time, one thread each (a busy machine hits both alike);
* ``--threads 2``: one after the other, the order alternating with the seed.

Both validate on the whole validation split (32 streams of 256, state carried) after the same
number of training tokens (rnnlab every ``--eval-tokens``, the plain script at the same count),
and both count validation against the budget. Compared: each run's loss at its end, and both
curves read at common times (the best loss reached by then). Writes ``OUT/recipes.json``,
``OUT/recipes.png`` and a Markdown table on stdout.

    python benchmarks/recipe_compare.py --budgets 3m,8m --seeds 0,1 --threads 1 --out runs/recipes

``--existing`` runs nothing and reports the finished pairs among those asked for (e.g. every
budget's, when the longer budgets have fewer seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from lm_compare import _at, _read_curve, finish_curve_axes, parse_duration, save_figure

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH = 32


def commands(budget: float, seed: int, threads: int, eval_tokens: int, out: Path) -> dict:
    """The two runs' command lines (rnnlab's windows are 50 tokens, the classic's 100)."""
    python = sys.executable
    rnnlab = [
        python, "-m", "rnnlab", "train", "lm", "--time-budget", f"{budget}s", "--seed", str(seed),
        "--threads", str(threads), "--eval-every", str(max(1, eval_tokens // (BATCH * 50))),
        "--out", str(out / "rnnlab"), "--overwrite", "--no-progress", "--sample", "0",
        "--device", "cpu",
    ]  # fmt: skip
    classic = [
        python, str(HERE / "plain_lm.py"), "--classic", "--time-budget", str(budget),
        "--seed", str(seed), "--eval-every", str(max(1, eval_tokens // (BATCH * 100))),
        "--out", str(out / "classic"),
    ]  # fmt: skip
    return {"rnnlab": rnnlab, "classic": classic}


def launch(cmd: list[str], threads: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def run_pair(cmds: dict, threads: int, seed: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = list(cmds) if seed % 2 == 0 else list(reversed(cmds))
    if threads == 1:
        procs = [launch(cmds[n], 1, out / f"{n}.log") for n in names]
    else:
        procs = []
        for n in names:
            procs.append(launch(cmds[n], threads, out / f"{n}.log"))
            procs[-1].wait()
    for n, p in zip(names, procs):
        if p.wait() != 0:
            sys.exit(f"{n} failed; see {out / (n + '.log')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", default="3m,8m", help="comma-separated durations")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--threads", type=int, choices=(1, 2), default=1)
    p.add_argument("--eval-tokens", type=int, default=320_000, help="tokens between validations")
    p.add_argument("--out", type=Path, default=Path("runs/recipes"))
    p.add_argument(
        "--existing",
        action="store_true",
        help="run nothing: report the pairs of these budgets and seeds that have finished",
    )
    args = p.parse_args()
    budgets = [parse_duration(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out.resolve()
    report: dict = {"threads": args.threads, "eval_tokens": args.eval_tokens, "runs": []}
    for budget in budgets:
        for seed in seeds:
            where = out / f"{budget:g}s-seed{seed}"
            cmds = commands(budget, seed, args.threads, args.eval_tokens, where)
            if not all((where / n / "eval.csv").exists() for n in cmds):  # (kept: re-runs resume)
                if args.existing:
                    continue
                print(f"budget {budget:g}s seed {seed} ...", flush=True)
                run_pair(cmds, args.threads, seed, where)
            entry = {"budget_s": budget, "seed": seed, "commands": {}, "curves": {}, "final": {}}
            for name, cmd in cmds.items():
                curve = _read_curve(where / name / "eval.csv")
                entry["commands"][name] = " ".join(cmd[1:])
                entry["curves"][name] = curve
                entry["final"][name] = _at(curve, budget / 60 + 1)  # its last (best) validation
            report["runs"].append(entry)
    if not report["runs"]:
        sys.exit(f"no finished pair of these budgets and seeds in {out}")
    (out / "recipes.json").write_text(json.dumps(report, indent=2))
    print(f"\n{args.threads} thread(s); validation loss in nats/char at the end of the budget")
    print("| budget | seed | rnnlab | classic | rnnlab - classic |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for budget in sorted({e["budget_s"] for e in report["runs"]}):
        diffs = []
        for e in (e for e in report["runs"] if e["budget_s"] == budget):
            r, c = e["final"]["rnnlab"], e["final"]["classic"]
            diffs.append(r - c)
            print(f"| {budget / 60:.3g} min | {e['seed']} | {r:.4f} | {c:.4f} | {r - c:+.4f} |")
        print(f"| {budget / 60:.3g} min | mean | | | {statistics.fmean(diffs):+.4f} |")
    _plot(report, out / "recipes.png")


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({e["budget_s"] for e in report["runs"]})
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 3.8), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for e in (e for e in report["runs"] if e["budget_s"] == budget):
            for name, color in (("rnnlab", "C0"), ("classic", "C1")):
                t = [s / 60 for s, _ in e["curves"][name]]
                v = [x for _, x in e["curves"][name]]
                label = name if e["seed"] == report["runs"][0]["seed"] else None
                ax.plot(t, v, "o-", color=color, alpha=0.7, ms=3, label=label)
        ax.set_title(f"{budget / 60:g}-minute budget, {report['threads']} thread(s)")
        finish_curve_axes(ax)
    save_figure(fig, path)


if __name__ == "__main__":
    main()

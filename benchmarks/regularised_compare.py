"""The language model with the AWD-LSTM regularisers against the same model without them,
trained side by side for a long budget.

Both are ``rnnlab train lm`` with the defaults (a 2x512 LSTM, dropout 0.2 between the layers,
AdamW with weight decay, cosine schedule over the budget); the regularised one adds
``--regularisers`` (by default DropConnect on the recurrent weights, locked dropout on the
layer's input, between its layers and on its output, embedding dropout, AR and TAR; see
docs/REGULARISERS.md). They run at the same time, one thread each, so a busy machine slows both
alike. Runs whose ``result.json`` exists are read, not run again. Writes
``OUT/regularised.json``, ``OUT/regularised.png`` (validation and training loss against
minutes) and a Markdown table on stdout.

    python benchmarks/regularised_compare.py --budget 2h --out runs/awd-2h
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from lm_compare import _read_curve, finish_curve_axes, parse_duration, save_figure
from recipe_compare import launch

AWD = (
    "--weight-drop 0.3 --locked-dropout --dropout 0.25 --input-dropout 0.1 "
    "--output-dropout 0.25 --embedding-dropout 0.05 --ar 2 --tar 1"
)
TRAIN_TAIL = 200  # logged steps averaged for "training loss at the end"
RUNS = {"plain": "plain", "regularised": "awd"}  # run name -> its folder under OUT


def commands(budget: str, seed: int, regularisers: str, out: Path) -> dict[str, list[str]]:
    base = [sys.executable, "-m", "rnnlab", "train", "lm", "--time-budget", budget]
    base += ["--threads", "1", "--seed", str(seed)]
    return {
        "plain": [*base, "--out", str(out / RUNS["plain"])],
        "regularised": [*base, "--out", str(out / RUNS["regularised"]), *regularisers.split()],
    }


def _metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's metrics.csv (one per logged step), as numbers."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def summarise(run: Path) -> dict:
    result = json.loads((run / "result.json").read_text())
    val = _read_curve(run / "eval.csv")
    metrics = _metrics(run / "metrics.csv")
    train = [(r["elapsed_s"], r["train_loss"]) for r in metrics]
    best_t = next(t for t, v in val if v == min(v for _, v in val))
    train_end = statistics.fmean(v for _, v in train[-TRAIN_TAIL:])
    return {
        "steps": result["steps"],
        "epochs": result["epochs_completed"],
        "best_val": result["best_val_loss"],
        "best_step": result["best_step"],
        "best_minutes": best_t / 60,
        "final_val": val[-1][1],
        "train_end": train_end,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in metrics),
        "val_curve": val,
        "train_curve": train,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="2h")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--regularisers", default=AWD, help="the regularised run's extra flags")
    p.add_argument("--out", type=Path, default=Path("runs/awd-2h"))
    args = p.parse_args()
    parse_duration(args.budget)  # a bad duration fails here, not in both children
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmds = commands(args.budget, args.seed, args.regularisers, out)
    dirs = {n: out / folder for n, folder in RUNS.items()}
    todo = [n for n in cmds if not (dirs[n] / "result.json").exists()]
    procs = {n: launch(cmds[n], 1, out / f"{dirs[n].name}.log") for n in todo}
    for n, proc in procs.items():
        if proc.wait() != 0:
            sys.exit(f"{n} failed; see {out / (dirs[n].name + '.log')}")
    report = {"budget": args.budget, "seed": args.seed, "runs": {}}
    for n in cmds:
        report["runs"][n] = {"command": " ".join(cmds[n][2:]), **summarise(dirs[n])}
    (out / "regularised.json").write_text(json.dumps(report, indent=2))
    print(f"\n{args.budget} each, side by side, 1 thread each; losses in nats/char")
    print("| run | steps | epochs | tokens/s | best validation (at) | final validation "
          "| training loss at the end | gap |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in report["runs"].items():
        print(
            f"| {n} | {r['steps']:,} | {r['epochs']} | {r['tokens_per_s']:,.0f} "
            f"| **{r['best_val']:.4f}** ({r['best_minutes']:.0f} min) | {r['final_val']:.4f} "
            f"| {r['train_end']:.4f} | {r['final_val'] - r['train_end']:+.3f} |"
        )
    _plot(report, out / "regularised.png")


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for (name, r), color in zip(report["runs"].items(), ("C1", "C0")):
        val = [(t / 60, v) for t, v in r["val_curve"]]
        train = _smooth([(t / 60, v) for t, v in r["train_curve"]], 50)
        ax.plot(*zip(*val), "o-", ms=2.5, color=color, label=f"{name}: validation")
        ax.plot(*zip(*train), "--", lw=1, color=color, alpha=0.7, label=f"{name}: training")
    ax.set_ylim(0.75, 2.0)
    ax.set_title(f"2x512 LSTM on tiny-shakespeare, {report['budget']} each, 1 thread each")
    finish_curve_axes(ax)
    ax.set_ylabel("loss (nats/char)")
    save_figure(fig, path)


def _smooth(points: list[tuple[float, float]], k: int) -> list[tuple[float, float]]:
    """Means of consecutive blocks of ``k`` logged points."""
    blocks = [points[i : i + k] for i in range(0, len(points), k)]
    return [(statistics.fmean(t for t, _ in b), statistics.fmean(v for _, v in b)) for b in blocks]


if __name__ == "__main__":
    main()

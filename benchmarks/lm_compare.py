"""rnnlab's character LM against the same model in plain PyTorch, one after the other.

Runs ``rnnlab train lm`` with its defaults (2x512 LSTM, embedding 128, dropout 0.2 between the
layers, AdamW 3e-3 with weight decay 0.1, 100 warm-up steps then a cosine to 1e-4 over the
budget, clip 5, windows of 50, batches of 32, windows shifted each epoch) and then
``benchmarks/plain_lm.py`` with the same hyper-parameters and the same wall-clock budget, on the
same machine, and writes:

* ``OUT/compare.json``: both runs' validation curves (elapsed seconds, nats/char), best loss and
  when, and training tokens/s, plus the ratio rnnlab / plain;
* ``OUT/compare.png``: the two validation curves against minutes;
* ``OUT/sample.txt``: a 500-character sample from rnnlab's best checkpoint.

    python benchmarks/lm_compare.py --budget 30m            # the benchmark in docs/BENCHMARKS.md
    python benchmarks/lm_compare.py --budget 20s --out /tmp/cmp   # a quick check of the script
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def parse_duration(text: str) -> float:
    sys.path.insert(0, str(ROOT))
    from rnnlab.train.config import parse_duration as parse

    return parse(text)


def _read_curve(path: Path) -> list[tuple[float, float]]:
    with open(path, newline="") as f:
        return [(float(r["elapsed_s"]), float(r["val_loss"])) for r in csv.DictReader(f)]


def _at(curve: list[tuple[float, float]], minutes: float) -> float | None:
    """The best validation loss reached within ``minutes``."""
    values = [v for t, v in curve if t <= minutes * 60]
    return min(values) if values else None


def _run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}); see {log}:\n" + log.read_text()[-2000:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="30m", help="wall-clock budget of each run (30m)")
    p.add_argument("--out", type=Path, default=Path("runs/lm-compare"))
    p.add_argument(
        "--eval-every", type=int, default=None, help="validation interval (default: the scripts')"
    )
    p.add_argument("--skip-plain", action="store_true", help="only run rnnlab")
    args = p.parse_args()
    budget = parse_duration(args.budget)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable

    # The same hyper-parameters for both (rnnlab's defaults, spelled out for the plain script).
    common = ["--eval-every", str(args.eval_every)] if args.eval_every else []
    rnn_cmd = [
        python, "-m", "rnnlab", "train", "lm", "--time-budget", f"{budget}s",
        "--out", str(out / "rnnlab"), "--overwrite", "--no-progress", "--sample", "0",
        "--device", "cpu", *common,
    ]  # fmt: skip
    plain_cmd = [
        python, str(HERE / "plain_lm.py"), "--time-budget", str(budget),
        "--out", str(out / "plain"), *common,
    ]  # fmt: skip
    _run(rnn_cmd, out / "rnnlab.log")
    if not args.skip_plain:
        _run(plain_cmd, out / "plain.log")

    runs = {"rnnlab": out / "rnnlab"}
    if not args.skip_plain:
        runs["plain"] = out / "plain"
    report: dict = {
        "budget_s": budget,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "commands": {"rnnlab": " ".join(rnn_cmd[1:]), "plain": " ".join(plain_cmd[1:])},
        "runs": {},
    }
    for name, path in runs.items():
        curve = _read_curve(path / "eval.csv")
        result = json.loads((path / "result.json").read_text())
        best_t, best_v = min(curve, key=lambda tv: tv[1])
        report["runs"][name] = {
            "tokens_per_s": result["tokens_per_s"],
            "steps": result["steps"],
            "best_val_loss": best_v,
            "best_at_min": best_t / 60,
            "val_at_min": {m: _at(curve, m) for m in (4, 8, 12, 18, 24, 30)},
            "curve": curve,
        }
    if "plain" in report["runs"]:
        r, b = report["runs"]["rnnlab"], report["runs"]["plain"]
        report["tokens_per_s_ratio"] = r["tokens_per_s"] / b["tokens_per_s"]

    sample = subprocess.run(
        [python, "-m", "rnnlab", "sample", str(out / "rnnlab"), "--prime", "ROMEO:",
         "--length", "500", "--temperature", "0.8", "--seed", "0"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    (out / "sample.txt").write_text(sample)
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    _plot(report, out / "compare.png")

    print(f"\nbudget {budget:g}s; results in {out}")
    for name, r in report["runs"].items():
        print(
            f"{name:>7}: {r['tokens_per_s']:,.0f} tokens/s, best validation "
            f"{r['best_val_loss']:.4f} nats/char after {r['best_at_min']:.1f} min, "
            f"{r['steps']} steps"
        )
    if "tokens_per_s_ratio" in report:
        print(f"tokens/s ratio rnnlab / plain: {report['tokens_per_s_ratio']:.3f}")


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in report["runs"].items():
        t = [s / 60 for s, _ in r["curve"]]
        v = [x for _, x in r["curve"]]
        ax.plot(t, v, "o-", label=f"{name} ({r['tokens_per_s']:,.0f} tokens/s)")
    ax.axhline(1.43, color="grey", ls="--", lw=1, label="target 1.43")
    ax.set_title("char LM on tiny-shakespeare (90/10 split)")
    finish_curve_axes(ax)
    save_figure(fig, path)


def finish_curve_axes(ax: object) -> None:
    """Axis labels, grid and legend of a validation-loss-against-minutes plot."""
    ax.set_xlabel("minutes")  # type: ignore[attr-defined]
    ax.set_ylabel("validation loss (nats/char)")  # type: ignore[attr-defined]
    ax.grid(alpha=0.3)  # type: ignore[attr-defined]
    ax.legend()  # type: ignore[attr-defined]


def save_figure(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=100)  # type: ignore[attr-defined]
    plt.close(fig)


if __name__ == "__main__":
    main()

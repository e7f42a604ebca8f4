"""``compare``: every cell at equal parameter count on three tasks (Chung et al. 2014;
Jozefowicz, Zaremba & Sutskever 2015).

Tasks and their held-out metric:

* ``lm``: a character language model on a slice of tiny-shakespeare (the first ``chars``
  characters, split 90/10 contiguously): validation bits per character (lower is better).
* ``adding``: the adding problem at length T: test MSE (lower is better; baseline 0.167).
* ``names``: surname -> language (18 classes, the bundled names data, stratified 80/10/10):
  test accuracy (higher is better).

Every cell is sized so that the whole model (embedding, cell, read-out) has the task's
parameter budget. ``lstm`` is the LSTM with forget-gate bias 1 (rnnlab's default, after
Jozefowicz et al.), ``lstm-fb0`` the same with bias 0. The table gives the mean and standard
deviation over seeds per cell x task, and the cells are ranked by their mean rank over tasks.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from rnnlab.analysis.experiments.results import Result, config_dict, mean_spread
from rnnlab.analysis.experiments.seeds import (
    SeedEnsemble,
    TrainSettings,
    closest_size,
    sequence_model_parameters,
    train,
)
from rnnlab.analysis.experiments.tasks import Adding
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.analysis.plots import pyplot, save_figure
from rnnlab.core.cells import CellFactory
from rnnlab.core.registry import cell_factory
from rnnlab.tasks.runner import count_parameters

DESCRIPTION = "every cell (and MUT1-3, LSTM forget bias 0 vs 1) at equal size on LM, adding, names"

#: label -> (registry cell name, forget-gate bias or None for the cell's default)
VARIANTS: dict[str, tuple[str, float | None]] = {
    "elman": ("elman", None),
    "additive": ("additive", None),
    "minimal-gru": ("minimal-gru", None),
    "gru": ("gru", None),
    "lstm": ("lstm", 1.0),
    "lstm-fb0": ("lstm", 0.0),
    "lstm-nofg": ("lstm-nofg", None),
    "peephole": ("peephole", None),
    "mut1": ("mut1", None),
    "mut2": ("mut2", None),
    "mut3": ("mut3", None),
}


@dataclass(frozen=True)
class LMSetting:
    chars: int = 200_000
    budget: int = 60_000  # LSTM H = 96 with a 64-dim embedding
    embedding: int = 64
    steps: int = 1500
    batch: int = 32
    seq_len: int = 64
    lr: float = 3e-3


@dataclass(frozen=True)
class NamesSetting:
    budget: int = 25_000
    embedding: int = 32
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3


@dataclass(frozen=True)
class AddingSetting:
    T: int = 100
    budget: int = 4500
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=4000, lr=3e-3, eval_every=250, test_size=1000)
    )


@dataclass(frozen=True)
class CompareConfig:
    cells: tuple[str, ...] = tuple(VARIANTS)
    seeds: int = 3
    lm: LMSetting | None = field(default_factory=LMSetting)
    adding: AddingSetting | None = field(default_factory=AddingSetting)
    names: NamesSetting | None = field(default_factory=NamesSetting)


SETTINGS = {
    "full": CompareConfig(),
    "quick": CompareConfig(
        cells=("elman", "gru", "lstm", "lstm-fb0", "mut1"),
        seeds=2,
        lm=LMSetting(chars=60_000, budget=20_000, embedding=32, steps=120, batch=16, seq_len=32),
        adding=AddingSetting(
            T=40, budget=1200, train=TrainSettings(steps=300, lr=1e-2, eval_every=100)
        ),
        names=NamesSetting(budget=8000, embedding=16, steps=150, batch=64),
    ),
    "test": CompareConfig(
        cells=("elman", "lstm", "mut1"),
        seeds=2,
        lm=LMSetting(chars=20_000, budget=8000, embedding=16, steps=30, batch=8, seq_len=32),
        adding=AddingSetting(
            T=20, budget=600, train=TrainSettings(steps=60, lr=1e-2, eval_every=30)
        ),
        names=NamesSetting(budget=4000, embedding=16, steps=30, batch=64),
    ),
}

#: task -> (metric name, larger is better)
METRICS = {"lm": ("val_bpc", False), "adding": ("test_mse", False), "names": ("test_acc", True)}


def _count(build: Callable[[int], nn.Module]) -> Callable[[int], int]:
    def count(H: int) -> int:
        with torch.device("meta"):
            return count_parameters(build(H))

    return count


def _trainer_config(steps: int, lr: float, seed: int):
    from rnnlab.train.trainer import TrainConfig

    return TrainConfig(
        lr=lr, max_steps=steps, eval_every=steps, seed=seed, progress=False, schedule="constant"
    )


def _run_lm(label: str, s: LMSetting, seeds: int, log: Callable[[str], None]) -> list[dict]:
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.tasks.lm.data import StreamBatches, build_vocab, encode_text, read_corpus, split_ids
    from rnnlab.tasks.lm.model import RNNLM, LMConfig, TBPTTLoss, make_evaluator
    from rnnlab.train.trainer import Trainer

    text = read_corpus()[: s.chars]
    vocab = build_vocab(text)
    train_ids, val_ids = split_ids(encode_text(vocab, text), 0.1)
    name, fb = VARIANTS[label]

    def config(H: int) -> LMConfig:
        rnn = RecurrentConfig(cell=name, hidden_size=H, num_layers=1, forget_bias=fb)
        return LMConfig(vocab_size=len(vocab), embedding_size=s.embedding, rnn=rnn)

    H = closest_size(_count(lambda H: RNNLM(config(H))), s.budget)
    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        torch.manual_seed(seed)
        model = RNNLM(config(H))
        trainer = Trainer(
            model,
            _trainer_config(s.steps, s.lr, seed),
            loss_fn=TBPTTLoss(),
            evaluate=make_evaluator(val_ids, batch_size=16, seq_len=128),
        )
        result = trainer.fit(StreamBatches(train_ids, s.batch, s.seq_len))
        loss = result.best_val_loss if result.best_val_loss is not None else math.inf
        rows.append(_row("lm", label, seed, H, model, loss / math.log(2), start, result.stopped))
        log(f"  lm     {label:<12s} seed {seed}: {rows[-1]['value']:.3f} bpc")
    return rows


def _run_names(label: str, s: NamesSetting, seeds: int, log: Callable[[str], None]) -> list[dict]:
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.data import bundled
    from rnnlab.data.batching import pad_batch
    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.classify.data import characters, read_examples, stratified_split
    from rnnlab.tasks.classify.model import Classifier, ClassifierConfig
    from rnnlab.train.trainer import Trainer

    examples = read_examples(bundled("names"))
    labels = sorted({e.label for e in examples})
    tr, va, te = stratified_split([e.label for e in examples], (0.1, 0.1), seed=0)
    vocab = Vocab.build((characters(examples[i].text) for i in tr), sos=None, eos=None)
    label_id = {c: i for i, c in enumerate(labels)}

    def collate(idx: list[int]) -> tuple:
        tokens, lengths = pad_batch([vocab.encode(characters(examples[i].text)) for i in idx])
        return tokens, lengths, torch.tensor([label_id[examples[i].label] for i in idx])

    val = [collate(va[i : i + 512]) for i in range(0, len(va), 512)]
    test = [collate(te[i : i + 512]) for i in range(0, len(te), 512)]
    name, fb = VARIANTS[label]

    def config(H: int) -> ClassifierConfig:
        rnn = RecurrentConfig(cell=name, hidden_size=H, forget_bias=fb)
        return ClassifierConfig(
            vocab_size=len(vocab), num_classes=len(labels), embed_dim=s.embedding, rnn=rnn
        )

    def evaluate(model: nn.Module) -> dict[str, float]:
        losses = [float(model(*b)[1]) * len(b[2]) for b in val]
        return {"val_loss": sum(losses) / len(va)}

    H = closest_size(_count(lambda H: Classifier(config(H))), s.budget)
    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        torch.manual_seed(seed)
        model = Classifier(config(H))
        trainer = Trainer(model, _trainer_config(s.steps, s.lr, seed), evaluate=evaluate)

        def batches(epoch: int, seed: int = seed) -> list[tuple]:
            # this experiment's own shuffle (not rnnlab.data.batching.Batches'), so that the
            # documented full run stays reproducible
            g = torch.Generator().manual_seed(seed * 1000 + epoch)
            order = torch.randperm(len(tr), generator=g).tolist()
            return [collate(order[k : k + s.batch]) for k in range(0, len(tr), s.batch)]

        result = trainer.fit(batches)
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(*b[:2])[0].argmax(-1) == b[2]).sum()) for b in test)
        rows.append(_row("names", label, seed, H, model, correct / len(te), start, result.stopped))
        log(f"  names  {label:<12s} seed {seed}: accuracy {rows[-1]['value']:.3f}")
    return rows


def _run_adding(label: str, s: AddingSetting, seeds: int, log: Callable[[str], None]) -> list[dict]:
    task = Adding(s.T)
    name, fb = VARIANTS[label]
    cell: CellFactory = cell_factory(name, forget_bias=fb)
    H = closest_size(
        lambda H: sequence_model_parameters(cell, task.input_size, H, task.output_size), s.budget
    )
    start = time.perf_counter()
    ensemble = SeedEnsemble(cell, task.input_size, H, task.output_size, range(seeds))
    history = train(ensemble, task, s.train, data_seed=s.T)
    rows = []
    for seed in range(seeds):
        row = _row(
            "adding", label, seed, H, ensemble.member(seed), history.best["mse"][seed], start, ""
        )
        row["seconds"] = round(history.seconds / seeds, 1)
        rows.append(row)
    log(f"  adding {label:<12s} test MSE {[round(r['value'], 4) for r in rows]}")
    return rows


def _row(task, label, seed, H, model, value, start, stopped) -> dict:
    return {
        "task": task,
        "cell": label,
        "seed": seed,
        "hidden": H,
        "params": count_parameters(model),
        "value": float(value),
        "seconds": round(time.perf_counter() - start, 1),
        "stopped": stopped,
    }


def run(config: CompareConfig, out_dir: Path, log: Callable[[str], None] = print) -> Result:
    unknown = [c for c in config.cells if c not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown cells {unknown}; choose from {list(VARIANTS)}")
    runners = {"lm": _run_lm, "adding": _run_adding, "names": _run_names}
    store = UnitStore(out_dir / "units", config_dict(config))
    per_seed = []
    for task, runner in runners.items():
        setting = getattr(config, task)
        if setting is None:
            continue
        for label in config.cells:
            unit = f"compare-{task}-{label}"
            per_seed += store.get(unit, partial(runner, label, setting, config.seeds, log))
            if unit in store.reused:
                log(f"  {task:<6s} {label:<12s} stored in {store.path(unit)}")
    tasks = [t for t in runners if getattr(config, t) is not None]
    rows = []
    for task in tasks:
        metric, larger = METRICS[task]
        for label in config.cells:
            values = [r["value"] for r in per_seed if r["task"] == task and r["cell"] == label]
            finite = [v for v in values if math.isfinite(v)]
            mean, std = mean_spread(finite) if finite else (math.inf, 0.0)
            first = next(r for r in per_seed if r["task"] == task and r["cell"] == label)
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "cell": label,
                    "hidden": first["hidden"],
                    "params": first["params"],
                    "mean": mean,
                    "std": std,
                    "seeds": len(values),
                    "diverged": len(values) - len(finite),
                }
            )
        ordered = sorted(
            (r for r in rows if r["task"] == task),
            key=lambda r: -r["mean"] if larger else r["mean"],
        )
        for rank, r in enumerate(ordered, 1):
            r["rank"] = rank
    ranking = sorted(
        config.cells,
        key=lambda c: statistics.fmean(r["rank"] for r in rows if r["cell"] == c),
    )
    columns = [
        "task",
        "metric",
        "cell",
        "hidden",
        "params",
        "mean",
        "std",
        "seeds",
        "diverged",
        "rank",
    ]
    result = Result("compare", "", config_dict(config), columns, rows)
    result.summary = {
        "ranking (mean rank over tasks)": [
            f"{c} ({statistics.fmean(r['rank'] for r in rows if r['cell'] == c):.1f})"
            for c in ranking
        ],
        **{
            f"best on {t}": next(r["cell"] for r in rows if r["task"] == t and r["rank"] == 1)
            for t in tasks
        },
    }
    result.notes = [
        "lm: validation bits/char (lower is better); adding: test MSE (lower; baseline 0.167); "
        "names: test accuracy (higher); mean and std over seeds",
        "per-seed values are in results.json under data.per_seed",
    ]
    result.data["per_seed"] = per_seed
    result.plots.append(_plot(config, tasks, rows, out_dir / "compare.png"))
    return result


def _off_scale(value: float, median: float) -> bool:
    return median > 0 and value > 3 * median


def _plot(config: CompareConfig, tasks: list[str], rows: list[dict], path: Path) -> str:
    return save_figure(_figure(config, tasks, rows), path).name


def _figure(config: CompareConfig, tasks: list[str], rows: list[dict]):
    """One bar chart per task: mean and std per cell."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rs = [next(r for r in rows if r["task"] == task and r["cell"] == c) for c in config.cells]
        means = [r["mean"] if math.isfinite(r["mean"]) else float("nan") for r in rs]
        ax.bar(range(len(rs)), means, yerr=[r["std"] for r in rs], capsize=3, color="tab:blue")
        ax.set_xticks(range(len(rs)), config.cells, rotation=60, ha="right", fontsize=8)
        metric, larger = METRICS[task]
        ax.set_title(f"{task}: {metric} ({'higher' if larger else 'lower'} is better)")
        if task == "adding":
            ax.set_yscale("log")
            ax.axhline(Adding.baseline, color="k", ls="--", lw=1)
        elif finite := [(m, r["std"]) for m, r in zip(means, rs) if math.isfinite(m)]:
            # A cell whose mean is over 3x the median (e.g. a blown-up loss) would flatten every
            # other bar: the axis is set by the rest and the bar is labelled with its value.
            median = statistics.median(m for m, _ in finite)
            scale = [(m, sd) for m, sd in finite if not _off_scale(m, median)] or finite
            lo, hi = min(m - sd for m, sd in scale), max(m + sd for m, sd in scale)
            ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.1 * (hi - lo + 1e-3))
            top = ax.get_ylim()[1]
            for i, m in enumerate(means):
                if math.isfinite(m) and _off_scale(m, median):
                    ax.text(
                        i, top, f"{m:.4g}\n(off scale)", ha="center", va="top", fontsize=7,
                        bbox={"facecolor": "white", "alpha": 0.85, "linewidth": 0},
                    )  # fmt: skip
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"cells at equal parameter count, mean +- std over {config.seeds} seeds")
    return fig

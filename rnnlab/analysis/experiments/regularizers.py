"""``regularizers``: the norm-stabilizer (Krueger & Memisevic 2016) and layer norm (Ba et al.
2016) on the character language model.

Each arm trains the same char-LM on a tiny-shakespeare slice (the shared trainer, truncated
BPTT over ``seq_len`` steps): the norm-stabilizer with every ``beta`` of the grid
(``beta * mean_t (||h_t|| - ||h_{t-1}||)^2`` on the recurrent outputs; beta 0 is plain
training) and the layer-normalised cell without it. Reported: the validation loss over
training, and the hidden-norm drift: ``||h_t||`` along one long validation stream run from the
zero state for ``drift_steps`` steps, far past the ``seq_len`` steps seen in training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from rnnlab.analysis.experiments.results import Result, config_dict, mean_spread
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.analysis.plots import pyplot, save_figure

DESCRIPTION = "norm-stabilizer beta grid and layer norm on/off on the char LM: loss and norm drift"


@dataclass(frozen=True)
class RegularizersConfig:
    cells: tuple[str, ...] = ("lstm", "elman")
    betas: tuple[float, ...] = (0.0, 1.0, 10.0, 50.0, 500.0)
    layer_norm: bool = True  # also an arm with layer norm (and beta 0)
    seeds: int = 2
    chars: int = 300_000
    hidden: int = 128
    embedding: int = 64
    steps: int = 2000
    eval_every: int = 200
    batch: int = 32
    seq_len: int = 50
    lr: float = 3e-3
    drift_steps: int = 1000


SETTINGS = {
    "full": RegularizersConfig(),
    "quick": RegularizersConfig(
        cells=("lstm",), betas=(0.0, 50.0), seeds=1, chars=60_000, hidden=48, embedding=24,
        steps=150, eval_every=50, batch=16, seq_len=32, drift_steps=300,
    ),
    "test": RegularizersConfig(
        cells=("lstm",), betas=(0.0, 50.0), seeds=1, chars=20_000, hidden=24, embedding=12,
        steps=40, eval_every=20, batch=8, seq_len=20, drift_steps=120,
    ),
}  # fmt: skip


def _arms(config: RegularizersConfig) -> list[tuple[str, str, float, bool]]:
    arms = []
    for cell in config.cells:
        arms += [(f"{cell} beta={b:g}", cell, b, False) for b in config.betas]
        if config.layer_norm:
            arms.append((f"{cell} layer norm", cell, 0.0, True))
    return arms


def hidden_norms(model: torch.nn.Module, ids: torch.Tensor, streams: int, steps: int) -> np.ndarray:
    """Mean ``||h_t||`` of the top recurrent layer over ``streams`` contiguous windows of ``ids``,
    run from the zero state for ``steps`` steps: (steps,)."""
    starts = torch.linspace(0, len(ids) - steps - 1, streams).long()
    x = torch.stack([ids[s : s + steps] for s in starts])  # (streams, steps)
    captured = []
    handle = model.rnn.register_forward_hook(lambda m, i, o: captured.append(o[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
    return captured[0].norm(dim=-1).mean(0).numpy()


def run(config: RegularizersConfig, out_dir: Path, log: Callable[[str], None] = print) -> Result:
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.tasks.lm.data import StreamBatches, build_vocab, encode_text, read_corpus, split_ids
    from rnnlab.tasks.lm.model import RNNLM, LMConfig, TBPTTLoss, make_evaluator
    from rnnlab.train.trainer import TrainConfig, Trainer

    text = read_corpus()[: config.chars]
    vocab = build_vocab(text)
    train_ids, val_ids = split_ids(encode_text(vocab, text), 0.1)
    if len(val_ids) <= config.drift_steps + 1:
        raise ValueError(
            f"the validation slice ({len(val_ids)} chars) is shorter than drift_steps "
            f"({config.drift_steps}); use more chars or fewer drift steps"
        )
    evaluate_lm = make_evaluator(val_ids, batch_size=16, seq_len=128)
    store = UnitStore(out_dir / "units", config_dict(config))

    def train_arm(cell: str, beta: float, ln: bool, seed: int) -> dict:
        start = time.perf_counter()
        torch.manual_seed(seed)
        rnn = RecurrentConfig(cell=cell, hidden_size=config.hidden, layer_norm=ln)
        model = RNNLM(LMConfig(vocab_size=len(vocab), embedding_size=config.embedding, rnn=rnn))
        curve: list[tuple[int, float]] = []
        owner: list[Trainer] = []  # the trainer, for its step count when it evaluates

        def evaluate(m: torch.nn.Module) -> dict[str, float]:
            metrics = evaluate_lm(m)
            curve.append((owner[0].step, metrics["val_loss"]))
            return metrics

        trainer = Trainer(
            model,
            TrainConfig(
                lr=config.lr, max_steps=config.steps, eval_every=config.eval_every,
                norm_stabilizer=beta, seed=seed, progress=False,
            ),
            loss_fn=TBPTTLoss(),
            evaluate=evaluate,
        )  # fmt: skip
        owner.append(trainer)
        result = trainer.fit(StreamBatches(train_ids, config.batch, config.seq_len))
        norms = hidden_norms(model, val_ids, 8, config.drift_steps)
        best = result.best_val_loss
        return {
            "cell": cell,
            "beta": beta,
            "layer_norm": ln,
            "seed": seed,
            "best_val_loss": best if best is not None else math.inf,
            "stopped": result.stopped,
            "curve": curve,
            "norms": norms.tolist(),
            "seconds": round(time.perf_counter() - start, 1),
        }

    runs = []
    for label, cell, beta, ln in _arms(config):
        for seed in range(config.seeds):
            unit = f"regularizers-{label}-seed{seed}"
            run = store.get(unit, partial(train_arm, cell, beta, ln, seed))
            runs.append({"arm": label, **run})
            stored = " (stored)" if unit in store.reused else ""
            log(f"  {label:<22s} seed {seed}: val loss {run['best_val_loss']:.3f}{stored}")
    rows = []
    for label, cell, beta, ln in _arms(config):
        rs = [r for r in runs if r["arm"] == label]
        losses = [r["best_val_loss"] for r in rs if math.isfinite(r["best_val_loss"])]
        mean, std = mean_spread(losses) if losses else (math.inf, 0.0)
        norms = np.mean([r["norms"] for r in rs], axis=0)
        trained = norms[config.seq_len // 2 : config.seq_len].mean()  # inside the TBPTT horizon
        rows.append(
            {
                "arm": label,
                "cell": cell,
                "beta": beta,
                "layer_norm": ln,
                "val_loss": mean,
                "val_loss_std": std,
                "val_bpc": mean / math.log(2),
                "norm_in_horizon": float(trained),
                "norm_at_end": float(norms[-max(1, len(norms) // 10) :].mean()),
                "drift": float(norms[-max(1, len(norms) // 10) :].mean() / max(trained, 1e-12)),
                "seeds": len(rs),
            }
        )
    columns = list(rows[0])
    result = Result("regularizers", "", config_dict(config), columns, rows)
    result.summary = {
        "validation loss (nats/char)": {r["arm"]: round(r["val_loss"], 4) for r in rows},
        "norm drift (end / within horizon)": {r["arm"]: round(r["drift"], 3) for r in rows},
    }
    result.notes = [
        f"drift: mean ||h_t|| over the last 10% of a {config.drift_steps}-step run from the zero "
        f"state, divided by its mean over steps {config.seq_len // 2}-{config.seq_len} "
        f"(inside the {config.seq_len}-step training window); 1 = no drift",
    ]
    result.data["runs"] = runs
    result.plots.append(_plot(config, runs, out_dir / "regularizers.png"))
    return result


def _plot(config: RegularizersConfig, runs: list[dict], path: Path) -> str:
    plt = pyplot()
    fig, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    # one colour per regulariser setting, one line style per cell
    settings = [(beta, ln) for _, cell, beta, ln in _arms(config) if cell == config.cells[0]]
    styles = ("-", "--", ":", "-.")
    for label, cell, beta, ln in _arms(config):
        rs = [r for r in runs if r["arm"] == label]
        color = f"C{settings.index((beta, ln)) % 10}"
        ls = styles[config.cells.index(cell) % len(styles)]
        steps = [s for s, _ in rs[0]["curve"]]
        if steps:
            n = min(len(r["curve"]) for r in rs)
            loss = np.mean([[v for _, v in r["curve"][:n]] for r in rs], axis=0)
            loss_ax.plot(steps[:n], loss, marker=".", color=color, ls=ls, label=label)
        norms = np.mean([r["norms"] for r in rs], axis=0)
        norm_ax.plot(np.arange(1, len(norms) + 1), norms, color=color, ls=ls, label=label, lw=1)
    norm_ax.axvline(config.seq_len, color="gray", ls=":", lw=1, label="training window")
    loss_ax.set_xlabel("training step")
    loss_ax.set_ylabel("validation loss (nats/char)")
    loss_ax.set_title("validation loss")
    norm_ax.set_xlabel("step t of one long run from the zero state")
    norm_ax.set_ylabel("mean ||h_t||")
    norm_ax.set_title("hidden-norm drift")
    for ax in (loss_ax, norm_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("norm-stabilizer and layer norm on the char LM")
    return save_figure(fig, path).name

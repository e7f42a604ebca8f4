"""``rnnlab experiment NAME [--quick] [--out DIR] [--seeds N]``: run one of the experiments;
``rnnlab diagnose CKPT``: gradient flow, Jacobian spectra and gate statistics of a trained model."""

from __future__ import annotations

import argparse

import torch


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    """Add ``rnnlab experiment``."""
    from rnnlab.analysis.experiments import EXPERIMENTS

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
        "--fresh", action="store_true",
        help="recompute everything; by default the parts an interrupted run of the same "
        "configuration finished (kept in OUT/units) are reused",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: the models are tiny; more threads mostly add overhead)",
    )  # fmt: skip
    p.set_defaults(func=_run, setting="full")

    d = commands.add_parser(
        "diagnose",
        help="gradient flow, step-Jacobian spectra and gate statistics of a checkpoint",
        description="Diagnose a trained language model (train lm) or classifier (train "
        "classify) on a batch of its kind of data: the norm of dL/ds_k against the lag for the "
        "loss at the last step, the singular values of the step Jacobians along one sequence, "
        "and every gate's mean and saturation. Writes PNGs and diagnostics.json into --out.",
    )
    d.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    d.add_argument("--out", default=None, help="output directory (default RUN/diagnostics)")
    d.add_argument("--data", default=None, help="text file (lm) or names folder / TSV (classify)")
    d.add_argument("--length", type=int, default=100, help="steps per sequence (lm; 100)")
    d.add_argument("--batch", type=int, default=32, help="sequences in the batch (32)")
    d.set_defaults(func=_diagnose)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rnnlab.analysis.experiments import report, run_experiment
    from rnnlab.errors import RnnlabError

    if args.threads < 1:
        raise RnnlabError(f"--threads must be a positive integer, got {args.threads}")
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path("runs/experiments") / args.name
    print(f"running experiment {args.name} ({args.setting}) -> {out}", flush=True)
    result = run_experiment(args.name, args.setting, out, seeds=args.seeds, fresh=args.fresh)
    print(report(result, out))
    return 0


def _batch(model, meta: dict, args: argparse.Namespace):
    """``(run, loss_fn)`` closures over one batch of the checkpoint's kind of data."""
    from torch.nn import functional as F

    from rnnlab.errors import RnnlabError

    task = meta.get("task")
    g = torch.Generator().manual_seed(0)
    if task == "lm":
        from rnnlab.tasks.lm.data import read_corpus, split_ids, vocab_from_meta

        vocab = vocab_from_meta(meta.get("vocab"))
        text = read_corpus(args.data)
        _, ids = split_ids(vocab.encode(text), 0.1)  # the validation part
        T = args.length
        if T < 2 or len(ids) < T + 2:
            raise RnnlabError(f"--length must be in [2, {len(ids) - 2}] for this text, got {T}")
        starts = torch.randint(0, len(ids) - T - 1, (args.batch,), generator=g)
        x = torch.stack([ids[s : s + T] for s in starts])
        y = torch.stack([ids[s + 1 : s + T + 1] for s in starts])

        def loss_fn():
            (logits, _), _ = model(x)
            return F.cross_entropy(logits[:, -1], y[:, -1])

        return (lambda: model(x)), loss_fn, f"the next character after {T} characters"
    if task == "classify":
        from collections import Counter

        from rnnlab.data import bundled
        from rnnlab.data.vocab import Vocab, pad_batch
        from rnnlab.tasks.classify.data import characters, read_examples

        vocab = Vocab.from_meta(meta["vocab"])
        label_id = {c: i for i, c in enumerate(meta["labels"])}
        examples = [e for e in read_examples(args.data or bundled("names")) if e.label in label_id]
        # one common length, so that every sequence's last step is the same step
        length = Counter(len(e.text) for e in examples).most_common(1)[0][0]
        pool = [e for e in examples if len(e.text) == length]
        pick = torch.randperm(len(pool), generator=g)[: args.batch].tolist()
        tokens, lengths = pad_batch([vocab.encode(characters(pool[i].text)) for i in pick])
        y = torch.tensor([label_id[pool[i].label] for i in pick])
        return (
            (lambda: model(tokens, lengths)),
            (lambda: model(tokens, lengths, y)[1]),
            f"the class of {len(pick)} names of {length} characters",
        )
    raise RnnlabError(
        f"diagnose knows language models (lm) and classifiers (classify), not {task!r} checkpoints"
    )


def _diagnose(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rnnlab.analysis import diagnostics
    from rnnlab.errors import RnnlabError
    from rnnlab.train.checkpoint import load_model

    if args.batch < 1:
        raise RnnlabError(f"--batch must be a positive integer, got {args.batch}")
    model, ckpt = load_model(args.checkpoint)
    path = Path(ckpt.path)  # never write inside a checkpoint: a later save would replace it
    default = (
        path.parent / "diagnostics"
        if path.name in ("best", "last")
        else path.with_name(path.name + "-diagnostics")
    )
    out = Path(args.out) if args.out else default
    out.mkdir(parents=True, exist_ok=True)
    run, loss_fn, what = _batch(model, ckpt.meta, args)
    flows = diagnostics.gradient_flow(model, loss_fn)
    spectra = diagnostics.jacobian_spectrum(model, run)  # along the batch's first sequence
    gates = diagnostics.gate_traces(model, run)
    stats = diagnostics.gate_statistics(model, run)
    diagnostics.plot_gradient_flow(flows, out / "gradient_flow.png", title=f"loss: {what}")
    diagnostics.plot_jacobian_spectrum(spectra, out / "jacobians.png")
    for name, g in gates.items():
        diagnostics.plot_gate_heatmaps(g, out / f"gates_{name}.png", title=f"{name} gates")
    report = {
        "checkpoint": str(ckpt.path),
        "loss": what,
        "gradient_flow": {
            n: {"decay_lag_1e3": f.decay_lag(), "norms_by_lag": f.by_lag.tolist()}
            for n, f in flows.items()
        },
        "jacobians": {
            n: {
                "step_max_sv_mean": float(s.step[:, 0].mean()),
                "product_max_sv_last": float(s.product[-1, 0]),
            }
            for n, s in spectra.items()
        },
        "gates": stats,
    }
    (out / "diagnostics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{ckpt.path}: loss at the last step ({what})")
    for n, f in flows.items():
        lag = f.decay_lag()
        decay = f"falls 1000-fold by lag {lag}" if lag is not None else "never falls 1000-fold"
        print(f"  {n}: ||dL/ds|| {decay} (over {len(f.by_lag)} steps)")
    for n, s in spectra.items():
        print(
            f"  {n}: step Jacobian top singular value {s.step[:, 0].mean():.3f} on average; "
            f"of the product over {len(s.step)} steps {s.product[-1, 0]:.2e}"
        )
    for n, per_gate in stats.items():
        cells = ", ".join(
            f"{g} mean {v['mean']:.2f} saturated {v['saturated']:.0%}" for g, v in per_gate.items()
        )
        print(f"  {n} gates: {cells}")
    print(f"wrote gradient_flow.png, jacobians.png, gates_*.png, diagnostics.json in {out}")
    return 0

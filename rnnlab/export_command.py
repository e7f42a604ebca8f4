"""``rnnlab export RUN --onnx FILE.onnx``: the options (torch-free, for the parser) and the
command, on :func:`rnnlab.export.to_onnx`."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from rnnlab.config import Config, option
from rnnlab.errors import RnnlabError
from rnnlab.tasks.runner import THREADS

#: the largest difference from PyTorch that ``--verify`` accepts (float32, any length)
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportOptions(Config):
    """Export a trained run as ONNX files that onnxruntime runs without rnnlab or torch, with
    dynamic batch and time. A model that generates (lm, seq2seq, names, caption) gets two:
    FILE.onnx runs a whole input (the language model over a sequence, or the encoder) and
    FILE-step.onnx one decoding step (state in, state out); a classifier or tagger gets
    FILE.onnx. Each file's metadata holds its inputs, outputs, state layout, vocabularies and
    task as JSON (docs/DEPLOY.md)."""

    title = "export"

    checkpoint: str = option(positional=True, metavar="RUN", help="a run directory or checkpoint")
    onnx: str | None = option(
        None, metavar="FILE.onnx", help="write the model here, and the decoding step of a model "
        "that generates beside it as FILE-step.onnx"
    )  # fmt: skip
    verify: bool = option(
        True, help="run the files in onnxruntime against PyTorch at batch 1, length 1 and "
        "batch 2, length 19, and report the largest difference (--no-verify: skip)"
    )  # fmt: skip
    threads: int | None = option(
        None, check=THREADS, help="torch CPU threads (default: the cores that other processes "
        "leave free)"
    )  # fmt: skip


def export(options: ExportOptions) -> int:
    if options.onnx is None:
        raise RnnlabError("export needs --onnx FILE.onnx, the file to write")
    from rnnlab.export import SUFFIXES, files, graphs, to_onnx, verify_onnx
    from rnnlab.machine import choose_threads
    from rnnlab.tasks.runner import check_writable, load_run

    try:
        targets = files(options.onnx, list(SUFFIXES))
    except RnnlabError as exc:
        raise RnnlabError(f"--onnx {exc}") from None
    for path in targets.values():  # before any work
        check_writable(path, "--onnx", directory=False)
    if options.verify:
        _require_onnxruntime()
    choose_threads(options.threads)
    run = load_run(options.checkpoint, "cpu")
    data = {k: v for k, v in run.meta.get("data", {}).items() if k != "source"}
    written = to_onnx(run.model, options.onnx, vocabs=run.vocabs, data=data, task=run.task.name)
    _, parts = graphs(run.model)
    for path, graph in zip(written, parts):
        ins = ", ".join(p.name for p in graph.inputs)
        outs = ", ".join(p.name for p in graph.outputs)
        size = path.stat().st_size / 1e6
        print(f"wrote {path} ({graph.role}: {ins} -> {outs}; {size:.1f} MB)")
    if not options.verify:
        return 0
    errors = verify_onnx(run.model, options.onnx)
    worst = max(errors.values())
    if worst > TOLERANCE:
        path = max(errors, key=errors.__getitem__)
        print(
            f"rnnlab: error: {path} differs from PyTorch by {worst:.2g} in onnxruntime (more "
            f"than {TOLERANCE:g}): please report it",
            file=sys.stderr,
        )
        return 1
    print(f"verified in onnxruntime at batch 1, length 1 and batch 2, length 19: within "
          f"{worst:.1g} of PyTorch")  # fmt: skip
    return 0


def _require_onnxruntime() -> None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        raise RnnlabError(
            "--verify needs onnxruntime (pip install onnxruntime), or give --no-verify"
        )


__all__ = ["ExportOptions", "export"]

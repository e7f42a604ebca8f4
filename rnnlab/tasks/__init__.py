"""Task models, one file per task, and the table that rebuilds any of them from a checkpoint.

Each task module defines a frozen config dataclass, a model whose ``forward(inputs, targets=None)``
returns ``(output, loss)``, and ``from_meta(meta) -> nn.Module`` to rebuild it from the ``meta``
stored with its checkpoints (``{"task": NAME, "model_config": {...}, ...}``).
"""

from __future__ import annotations

import importlib

from torch import nn

from rnnlab.errors import RnnlabError

#: Task name (``meta["task"]``) -> the module that defines its ``from_meta``. One line per task.
TASKS: dict[str, str] = {
    "lm": "rnnlab.tasks.lm.model",
    "classify": "rnnlab.tasks.classify.model",
    "tag": "rnnlab.tasks.tag.model",
    "seq2seq": "rnnlab.tasks.seq2seq.model",
    "names": "rnnlab.tasks.names.model",
    "caption": "rnnlab.tasks.caption.model",
}


def build_model(meta: dict) -> nn.Module:
    """Rebuild a task model from its checkpoint ``meta`` (weights not loaded)."""
    task = meta.get("task") if isinstance(meta, dict) else None
    if task not in TASKS:
        raise RnnlabError(
            f"checkpoint is for task {task!r}, which this rnnlab does not know "
            f"(known: {', '.join(sorted(TASKS))})"
        )
    module = importlib.import_module(TASKS[task])
    try:
        return module.from_meta(meta)
    except (KeyError, TypeError) as exc:
        raise RnnlabError(f"checkpoint meta for task {task!r} is incompatible: {exc}") from None


__all__ = ["TASKS", "build_model"]

"""The task commands: the four usage patterns beyond the language model.

``rnnlab train classify|tag|seq2seq|names|caption``, and for their checkpoints ``rnnlab predict``,
``rnnlab tag``, ``rnnlab translate``, ``rnnlab generate-names`` and ``rnnlab caption``; the data
converters ``rnnlab data punct-tags`` and ``rnnlab data captions``. One module per task
(``rnnlab/cli/task_*.py``); this one adds them all.
"""

from __future__ import annotations

import argparse
import importlib

#: One module per task, each with ``register(commands, train)``.
TASK_MODULES = (
    "rnnlab.tasks.classify.task",
    "rnnlab.tasks.tag.task",
    "rnnlab.tasks.seq2seq.task",
    "rnnlab.tasks.names.task",
    "rnnlab.tasks.caption.task",
)


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    """Add the task commands, and ``rnnlab data`` with the task data converters."""
    data = commands.add_parser(
        "data", help="make task data sets (punctuation tags, captioning images)"
    )
    converters = data.add_subparsers(dest="converter", metavar="CONVERTER")
    converters.required = True
    for name in TASK_MODULES:
        module = importlib.import_module(name)
        module.register(commands, train)
        if hasattr(module, "register_data"):
            module.register_data(converters)

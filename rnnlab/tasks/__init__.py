"""The tasks: one folder per task (data, model, task object), and the table that names them.

Every task is a :class:`~rnnlab.tasks.base.Task` object; :mod:`rnnlab.tasks.runner` trains any of
them and loads any of their checkpoints. A new task is one object: register it with
:func:`register_task`, or from another package through the ``rnnlab.tasks`` entry-point group
(``name = "package.module:TASK"``), and ``rnnlab train NAME`` and its commands exist.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING

from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    from rnnlab.tasks.base import Task

#: Task name -> ``"module:attribute"`` of its task object. One line per task.
TASKS: dict[str, str] = {
    "lm": "rnnlab.tasks.lm.task:TASK",
    "classify": "rnnlab.tasks.classify.task:TASK",
    "tag": "rnnlab.tasks.tag.task:TASK",
    "seq2seq": "rnnlab.tasks.seq2seq.task:TASK",
    "names": "rnnlab.tasks.names.task:TASK",
    "caption": "rnnlab.tasks.caption.task:TASK",
}
_LOADED: dict[str, Task] = {}
_PLUGINS_READ = False


def register_task(task: Task) -> Task:
    """Make ``task`` known by its name (to ``rnnlab train``, the commands and the loader)."""
    TASKS[task.name] = f"{type(task).__module__}:{type(task).__qualname__}"
    _LOADED[task.name] = task
    return task


def _read_plugins() -> None:
    global _PLUGINS_READ
    if _PLUGINS_READ:
        return
    _PLUGINS_READ = True
    for entry in metadata.entry_points(group="rnnlab.tasks"):
        TASKS.setdefault(entry.name, entry.value)


def task_names() -> list[str]:
    """Every known task, built in and registered."""
    _read_plugins()
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task object called ``name``."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in TASKS:
        _read_plugins()
    if name not in TASKS:
        raise RnnlabError(f"unknown task {name!r}; this rnnlab knows: {', '.join(sorted(TASKS))}")
    module, _, attr = TASKS[name].partition(":")
    task = getattr(importlib.import_module(module), attr)
    _LOADED[name] = task
    return task


__all__ = ["TASKS", "get_task", "register_task", "task_names"]

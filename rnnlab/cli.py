"""The ``rnnlab`` command line: every command's flags are derived from its options config.

``rnnlab train TASK`` for every task; each task's "use" commands (``sample``, ``predict``, ...);
``rnnlab data CONVERTER``; and the analysis commands (``bench``, ``experiment``, ``diagnose``).
Building the parser imports no torch (configs and task objects are torch-free at import), so
``--help`` and ``--version`` answer at once; the command that runs imports what it needs.

Errors a user can cause (:class:`~rnnlab.errors.RnnlabError`, missing files, bad options) are
printed as one line, without a traceback, with exit code 2; a run that stops on a NaN/Inf loss
exits with 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rnnlab.config import Config, add_arguments, given, paths, read_config_file, resolve, walk
from rnnlab.errors import RnnlabError


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read options from a JSON or YAML file (e.g. a run's config.json); flags given "
        "on the command line win",
    )


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ")


def _explicit(ns: argparse.Namespace, cls: type[Config]) -> list[dict[str, Any]]:
    """What the user set for ``cls``: the ``--config`` file's options, then the flags given."""
    layers = [read_config_file(ns.config)] if getattr(ns, "config", None) else []
    if layers:
        task = layers[0].pop("task", None)
        if task is not None and task != getattr(ns, "task_name", task):
            raise RnnlabError(f"{ns.config} is a config for task {task!r}, not {ns.task_name!r}")
        if not any(f.metadata.get("positional") for _, f, _ in walk(cls)):
            resolve(cls, explicit=layers, where=ns.config)  # name the file in its errors
    return [*layers, given(ns, cls)]


def _options(cls: type[Config], ns: argparse.Namespace) -> Config:
    """The options of ``cls``: its defaults < ``--config FILE`` < the flags given."""
    return resolve(cls, explicit=_explicit(ns, cls))


def _train(ns: argparse.Namespace) -> int:
    from rnnlab.tasks import get_task
    from rnnlab.tasks.runner import RunConfig, saved_config, train

    task = get_task(ns.task_name)
    run = resolve(RunConfig, explicit=[given(ns, RunConfig)])
    base = saved_config(run.out) if run.resume else {}
    explicit = _explicit(ns, task.config)
    config = resolve(task.config, base, explicit=explicit)
    if not run.resume:  # a resumed run keeps what its config.json says
        config = task.adjust(config, frozenset(p for layer in explicit for p in paths(layer)))
    return train(task, config, run)


def _use(ns: argparse.Namespace) -> int:
    from rnnlab.tasks import get_task
    from rnnlab.tasks.runner import UseConfig, load_run, resolve_device

    task = get_task(ns.task_name)
    options = _options(task.commands[ns.command], ns)
    machine = resolve(UseConfig, explicit=[given(ns, UseConfig)])
    run = load_run(
        options.checkpoint, resolve_device(machine.device, machine.threads), task=task.name
    )
    return getattr(task, ns.command.replace("-", "_"))(run, options)


def _convert(ns: argparse.Namespace) -> int:
    from rnnlab.tasks import get_task

    task = get_task(ns.task_name)
    options = _options(task.converters[ns.converter], ns)
    return getattr(task, ns.converter.replace("-", "_"))(options)


def _analysis(function: Callable[[Any], int], cls: type[Config]) -> Callable[..., int]:
    def run(ns: argparse.Namespace) -> int:
        return function(_options(cls, ns))

    return run


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (torch-free)."""
    from rnnlab import __version__
    from rnnlab.analysis.commands import COMMANDS as ANALYSIS
    from rnnlab.tasks import get_task, task_names
    from rnnlab.tasks.runner import RunConfig, UseConfig

    parser = _Parser(
        prog="rnnlab",
        description="Recurrent neural networks: train, sample, evaluate, benchmark, experiment.",
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = commands.add_parser("train", help="train a model for a task").add_subparsers(
        dest="task_name", metavar="TASK", required=True
    )
    data = commands.add_parser("data", help="make task data sets").add_subparsers(
        dest="converter", metavar="CONVERTER", required=True
    )
    for name in task_names():
        task = get_task(name)
        p = train.add_parser(name, help=task.help, description=_summary(type(task)))
        seen: set[str] = set()
        add_arguments(p, task.config, seen=seen)
        add_arguments(p, RunConfig, seen=seen)
        _add_config_flag(p)
        p.set_defaults(handler=_train, task_name=name)
        for command, options in task.commands.items():
            q = commands.add_parser(command, help=_summary(options), description=_summary(options))
            seen = set()
            add_arguments(q, options, seen=seen)
            add_arguments(q, UseConfig, seen=seen)
            _add_config_flag(q)
            q.set_defaults(handler=_use, task_name=name)
        for converter, options in task.converters.items():
            q = data.add_parser(converter, help=_summary(options), description=_summary(options))
            add_arguments(q, options)
            q.set_defaults(handler=_convert, task_name=name)
    for command, (options, function) in ANALYSIS.items():
        q = commands.add_parser(command, help=_summary(options), description=_summary(options))
        add_arguments(q, options)
        _add_config_flag(q)
        q.set_defaults(handler=_analysis(function, options))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RnnlabError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"rnnlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``rnnlab`` command line: one parser, sub-commands registered by one module per area.

Every command returns an exit code. Errors a user can cause (:class:`RnnlabError`, missing
files, bad options) are printed as one line, without a traceback, with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rnnlab.errors import RnnlabError

#: Modules that add sub-commands: each has ``register(commands, train)`` where ``commands`` and
#: ``train`` are argparse sub-parser collections (``rnnlab X`` and ``rnnlab train X``).
COMMAND_MODULES = (
    "rnnlab.tasks.lm.task",
    "rnnlab.cli.tasks",
    "rnnlab.cli.bench",
    "rnnlab.cli.experiment",
)


def build_parser() -> argparse.ArgumentParser:
    from rnnlab import __version__

    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="Recurrent neural networks: train, sample, evaluate, benchmark, experiment.",
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    train_parser = commands.add_parser("train", help="train a model for a task")
    train = train_parser.add_subparsers(dest="task", metavar="TASK")
    train.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands, train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RnnlabError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"rnnlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

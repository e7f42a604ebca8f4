"""Command-line flags derived from configs: one flag (or positional argument) per field.

:func:`add_arguments` adds a config's fields (and its nested configs', one argument group each)
to an argparse parser: ``--field-name``, old spellings as aliases, ``--no-X`` for booleans, the
range check and the default in ``--help``. :func:`given` reads back what the command line set,
as the nested dict :func:`rnnlab.config.resolve` layers over the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

from rnnlab.config import Config, _default_instance, _fields, _Kind, _set, walk
from rnnlab.errors import RnnlabError


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _parser(f: dataclasses.Field, kind: _Kind, flag: str) -> Callable[[str], Any]:
    """argparse ``type``: text -> value, range-checked, with a one-line error."""
    meta = f.metadata
    custom = meta.get("parse")
    base = kind.base

    def parse(text: str) -> Any:
        if custom is not None:
            try:
                value = custom(text)
            except (RnnlabError, ValueError) as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        elif base is int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        elif base is float:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        else:
            value = text
        check = meta.get("check")
        if check is not None and not check(value):
            raise argparse.ArgumentTypeError(f"expected a value {check.text}, got {text!r}")
        return value

    parse.__name__ = flag
    return parse


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type[Config],
    defaults: Config | None = None,
    seen: set[str] | None = None,
) -> None:
    """Add a flag (or positional argument) for every scalar field of ``cls`` and its nested
    configs, one argument group per config. Values given land in the namespace under their
    dotted path (``"rnn.cell"``); absent ones are not set at all (see :func:`given`).

    Args:
        defaults: the instance whose values ``--help`` shows (default ``cls()``).
        seen: flags already taken in ``parser`` (shared across calls to catch a clash).
    """
    defaults = defaults if defaults is not None else _default_instance(cls)
    _add_group(parser, cls, defaults, "", seen if seen is not None else set())


def _add_group(
    parser: argparse.ArgumentParser, cls: type[Config], defaults: Config | None, prefix: str,
    seen: set[str],
) -> None:  # fmt: skip
    doc = (cls.__doc__ or "").strip().splitlines()
    title = cls.title or (doc[0].rstrip(".") if doc else cls.__name__)
    group = parser.add_argument_group(title)
    later = []
    for f, kind in _fields(cls):
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:  # a command with a required positional has no default instance: the field's own
            default = f.default if f.default is not MISSING else None
        if f.metadata.get("nested"):
            later.append((kind.base, default, prefix + f.name + "."))
            continue
        if not f.metadata.get("cli", True):
            continue
        dest = prefix + f.name
        help_text = f.metadata["help"]
        if f.default is not MISSING or defaults is not None:
            help_text += f" (default: {_default_text(default)})"
        if f.metadata.get("positional"):
            nargs = "+" if kind.tuple_of else None
            group.add_argument(
                dest, type=_parser(f, kind, f.name), nargs=nargs, choices=f.metadata["choices"],
                metavar=f.metadata.get("metavar") or f.name.upper(), help=help_text,
            )  # fmt: skip
            continue
        flag = _flag(f)
        names = [flag, *f.metadata["aliases"]]
        for name in names:
            if name in seen:
                raise TypeError(f"{cls.__name__}.{f.name}: flag {name} is declared twice")
            seen.add(name)
        if kind.base is bool and not kind.tuple_of:
            off = ["--no-" + flag[2:], *f.metadata["off_aliases"]]
            seen.update(off)
            group.add_argument(
                *names, dest=dest, action="store_const", const=True,
                default=argparse.SUPPRESS, help=help_text,
            )  # fmt: skip
            group.add_argument(
                *off, dest=dest, action="store_const", const=False,
                default=argparse.SUPPRESS, help=argparse.SUPPRESS,
            )  # fmt: skip
            continue
        choices = f.metadata.get("choices")
        metavar = f.metadata.get("metavar") or (
            "{" + ",".join(choices) + "}" if choices else f.name.upper()
        )
        if f.metadata.get("const", MISSING) is not MISSING:
            group.add_argument(
                *names, dest=dest, type=_parser(f, kind, flag), default=argparse.SUPPRESS,
                choices=choices, metavar=metavar, help=help_text, nargs="?",
                const=f.metadata["const"],
            )  # fmt: skip
            continue
        group.add_argument(
            *names, dest=dest, type=_parser(f, kind, flag), default=argparse.SUPPRESS,
            choices=choices, metavar=metavar, help=help_text,
            action="append" if f.metadata.get("repeat") else "store",
            nargs="+" if kind.tuple_of and not f.metadata.get("repeat") else None,
        )  # fmt: skip
    for sub, sub_default, sub_prefix in later:
        _add_group(parser, sub, sub_default, sub_prefix, seen)


def given(namespace: argparse.Namespace, cls: type[Config]) -> dict[str, Any]:
    """The values the command line set for ``cls``'s fields, as a nested dict."""
    out: dict[str, Any] = {}
    values = vars(namespace)
    for path, _, kind in walk(cls):
        if path in values:
            value = values[path]
            if kind.tuple_of and isinstance(value, list):
                value = tuple(value)
            _set(out, path, value)
    return out


__all__ = ["add_arguments", "given"]

"""Typed, frozen configs: every option declared once, beside its field, with its default, range
and help; the command line, config files and checkpoints all read the same declaration.

A config is a frozen dataclass that subclasses :class:`Config` and declares its fields with
:func:`option` (a scalar the user sets) or :func:`nested` (another config)::

    @dataclass(frozen=True)
    class TrainConfig(Config):
        lr: float = option(2e-3, check=positive, help="peak learning rate")
        warmup_steps: int = option(0, check=non_negative, aliases=("--warmup",), help="...")

Construction validates every field (type, choices, range) and then :meth:`Config.check` (rules
across fields), raising :class:`~rnnlab.errors.RnnlabError` with a one-line message.
:meth:`Config.to_meta` and :meth:`Config.from_meta` convert to and from JSON-able dicts (for
checkpoints and ``--config`` files, which :mod:`rnnlab.configfile` reads).
:func:`rnnlab.flags.add_arguments` derives the command-line flags (``--warmup-steps``, old
spellings kept as aliases) and :func:`resolve` merges defaults, a saved run config, a config
file and the flags given into one config.

This module imports neither torch nor anything heavy: building ``--help`` must stay fast.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, TypeVar

from rnnlab.errors import RnnlabError

C = TypeVar("C", bound="Config")


# -- range checks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """A range a value must lie in, with its wording for error messages (``"> 0"``)."""

    test: Callable[[Any], bool]
    text: str

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


positive = Check(lambda v: v > 0, "> 0")
non_negative = Check(lambda v: v >= 0, ">= 0")
probability = Check(lambda v: 0 <= v < 1, "in [0, 1)")
unit_interval = Check(lambda v: 0 <= v <= 1, "in [0, 1]")
fraction = Check(lambda v: 0 < v < 1, "in (0, 1)")


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f">= {low:g}")


# -- declaring fields ---------------------------------------------------------------------------
def option(
    default: Any = MISSING,
    *,
    help: str,
    check: Check | None = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    off_aliases: Sequence[str] = (),
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    positional: bool = False,
    repeat: bool = False,
    const: Any = MISSING,
    group: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field: its default and everything the command line and the checks need.

    Args:
        default: the default value (omit for a required field, e.g. a positional argument).
        help: one line for ``--help``.
        check: the range the value must lie in (``positive``, ``probability``, ...).
        choices: the allowed values of a string field.
        flag: the flag's spelling (default ``--field-name``).
        aliases: older spellings that still work (``--warmup`` for ``warmup_steps``).
        off_aliases: for a boolean, spellings of ``--no-FLAG`` (``--unidirectional``).
        metavar: the placeholder shown in ``--help``.
        parse: turns the command-line text into the value (default: from the field's type).
        positional: a positional argument instead of a flag (a tuple field takes one or more).
        repeat: a tuple field given by repeating its flag (``--grid 1,2,3 --grid 4,5,6``).
        const: the value of the flag given without a value (``--attention`` alone means
            ``"bahdanau"``); without it, a flag needs its value.
        group: fields of one group are set together: when a config file or a flag sets any of
            them, the others that were not set are cleared to None (the run's limits).
        cli: False for a field that is derived, never typed by a user (no flag).
    """
    metadata = {
        "help": help,
        "check": check,
        "choices": tuple(choices) if choices is not None else None,
        "flag": flag,
        "aliases": tuple(aliases),
        "off_aliases": tuple(off_aliases),
        "metavar": metavar,
        "parse": parse,
        "positional": positional,
        "repeat": repeat,
        "const": const,
        "group": group,
        "cli": cli,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as a config default")
    return field(default=default, metadata=metadata)


def nested(default: Config, *, title: str | None = None) -> Any:
    """A field holding another config (flattened into the same flags on the command line)."""
    return field(default_factory=lambda: default, metadata={"nested": True, "title": title})


# -- the base class -----------------------------------------------------------------------------
class Config:
    """Base class of rnnlab's frozen config dataclasses: validation, meta, replace."""

    #: the argument group's title in ``--help``; default the class docstring's first line
    title: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for f, kind in _fields(type(self)):
            _validate(f, kind, getattr(self, f.name), f.name)
        self.check()

    def check(self) -> None:
        """Rules that involve several fields; raise :class:`RnnlabError`. Default: none."""

    def to_meta(self) -> dict[str, Any]:
        """A JSON-serialisable dict (nested configs as dicts, tuples as lists)."""
        return {f.name: _to_json(getattr(self, f.name)) for f, _ in _fields(type(self))}

    @classmethod
    def from_meta(cls: type[C], data: Any, where: str | None = "config") -> C:
        """The config described by ``data`` (as :meth:`to_meta` writes it); missing fields take
        their defaults. Unknown keys and values of the wrong type raise :class:`RnnlabError`
        naming the key (after ``where``, the source, if given)."""
        at = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise RnnlabError(f"{at}expected a mapping of options, got {_kind_of(data)}")
        known = {f.name: (f, kind) for f, kind in _fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            raise RnnlabError(
                f"{at}unknown option {unknown[0]!r} for {cls.__name__} (known: {', '.join(known)})"
            )
        values = {}
        for name, value in data.items():
            _, kind = known[name]
            values[name] = _from_json(kind, value, f"{at}{name}")
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise RnnlabError(f"{at}{exc}") from None
        except RnnlabError as exc:
            raise RnnlabError(f"{at}{exc}") from None

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


# -- types --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Kind:
    """What a field's annotation allows: a base type, optionally None, optionally a tuple."""

    base: Any  # int, float, bool, str or a Config subclass
    optional: bool = False
    tuple_of: bool = False  # tuple[base, ...]

    def describe(self) -> str:
        name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        text = name.get(self.base, f"a {getattr(self.base, '__name__', self.base)}")
        return f"a list of {text.split(' ', 1)[1]}s" if self.tuple_of else text


_FIELDS: dict[type, list[tuple[dataclasses.Field, _Kind]]] = {}


def _fields(cls: type) -> list[tuple[dataclasses.Field, _Kind]]:
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = [(f, _kind(hints[f.name], cls, f.name)) for f in dataclasses.fields(cls)]
    return _FIELDS[cls]


def _kind(tp: Any, owner: type, name: str) -> _Kind:
    optional = False
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional, tp = len(rest) < len(args), rest[0]
        if len(rest) != 1:
            raise TypeError(f"{owner.__name__}.{name}: unions other than X | None unsupported")
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        return _Kind(item, optional, True)
    if tp in (int, float, bool, str) or (isinstance(tp, type) and issubclass(tp, Config)):
        return _Kind(tp, optional)
    raise TypeError(f"{owner.__name__}.{name}: unsupported config type {tp!r}")


def _kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _scalar_ok(base: Any, value: Any) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            return ok and math.isfinite(value)
        except OverflowError:  # an integer beyond any float
            return False
    if base is str:
        return isinstance(value, str)
    if isinstance(base, type) and issubclass(base, Config):
        return isinstance(value, base)
    return isinstance(value, tuple)  # tuple[tuple[...], ...] items: checked by the field's check


def _validate(f: dataclasses.Field, kind: _Kind, value: Any, where: str) -> None:
    if value is None:
        if not kind.optional:
            raise RnnlabError(f"{where} must be {kind.describe()}, got null")
        return
    items = value if kind.tuple_of else (value,)
    if kind.tuple_of and not isinstance(value, tuple):
        raise RnnlabError(f"{where} must be {kind.describe()}, got {_kind_of(value)}")
    meta = f.metadata
    for item in items:
        if not _scalar_ok(kind.base, item):
            raise RnnlabError(f"{where} must be {kind.describe()}, got {item!r}")
        choices = meta.get("choices")
        if choices is not None and item not in choices:
            raise RnnlabError(f"{where} must be one of {', '.join(choices)}; got {item!r}")
        check = meta.get("check")
        try:
            ok = check is None or check(item)
        except (TypeError, ValueError):  # an item of the wrong shape (e.g. in a tuple of tuples)
            ok = False
        if not ok:
            raise RnnlabError(f"{where} must be {check.text or 'valid'}, got {item!r}")


def _to_json(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_meta()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(kind: _Kind, value: Any, where: str) -> Any:
    if value is None:
        return None  # validated by the constructor
    if kind.tuple_of:
        if not isinstance(value, (list, tuple)):
            raise RnnlabError(f"{where} must be {kind.describe()}, got {_kind_of(value)}")
        return tuple(_from_json(_Kind(kind.base), v, where) for v in value)
    if isinstance(kind.base, type) and issubclass(kind.base, Config):
        return kind.base.from_meta(value, where)
    if kind.base is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise RnnlabError(
                f"{where} must be {kind.describe()}, got a {value.bit_length()}-bit integer"
            ) from None
    if isinstance(value, list):  # a tuple item stored as a JSON list
        return tuple(value)
    return value


def walk(cls: type[Config], prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, _Kind]]:
    """Every scalar field of ``cls`` and its nested configs, with its dotted path."""
    for f, kind in _fields(cls):
        path = prefix + f.name
        if f.metadata.get("nested"):
            yield from walk(kind.base, path + ".")
        else:
            yield path, f, kind


def _default_instance(cls: type[Config]) -> Config | None:
    try:
        return cls()
    except TypeError:  # required (positional) fields
        return None


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def paths(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted paths of a nested dict's leaves (``{"rnn": {"cell": "gru"}}``: ``rnn.cell``)."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from paths(value, prefix + key + ".")
        else:
            yield prefix + key


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(
    cls: type[C],
    *layers: Mapping[str, Any],
    explicit: Sequence[Mapping[str, Any]] = (),
    defaults: C | None = None,
    where: str | None = None,
) -> C:
    """One config from its defaults and layers of values, later layers winning.

    Args:
        cls: the config class.
        layers: nested dicts applied in order over the defaults (e.g. a saved run's config).
        explicit: nested dicts applied after ``layers`` that the user wrote (a config file, the
            flags given): setting any field of a ``group`` here clears the group's other
            fields that no explicit layer set.
        defaults: the instance whose values are the defaults (default ``cls()``).
        where: names the source in error messages (None: the values speak for themselves).
    """
    if defaults is None:
        defaults = _default_instance(cls)  # None when some fields are required
    merged = defaults.to_meta() if defaults is not None else {}
    for layer in layers:
        merged = _merge(merged, layer)
    set_paths: set[str] = set()
    for layer in explicit:
        merged = _merge(merged, layer)
        set_paths.update(paths(layer))
    groups: dict[tuple[str, str], list[str]] = {}
    for path, f, _ in walk(cls):
        group = f.metadata.get("group")
        if group:
            groups.setdefault((path.rpartition(".")[0], group), []).append(path)
    for members in groups.values():
        if any(p in set_paths for p in members):
            for p in members:
                if p not in set_paths:
                    _set(merged, p, None)
    return cls.from_meta(merged, where)


__all__ = [
    "Check",
    "Config",
    "at_least",
    "fraction",
    "nested",
    "non_negative",
    "option",
    "paths",
    "positive",
    "probability",
    "resolve",
    "unit_interval",
    "walk",
]

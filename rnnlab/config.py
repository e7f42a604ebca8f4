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
checkpoints and ``--config`` files). :func:`add_arguments` derives the command-line flags
(``--warmup-steps``, kept old spellings as aliases) and :func:`resolve` merges defaults, a saved
run config, a config file and the flags given into one config.

This module imports neither torch nor anything heavy: building ``--help`` must stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import stat
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from pathlib import Path
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


# -- config files -------------------------------------------------------------------------------
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting a config file may have (rnnlab's configs nest three levels).
MAX_CONFIG_DEPTH = 32
#: Most values a config file may hold once YAML aliases are expanded (a "billion laughs" file
#: declares billions in a few hundred bytes).
MAX_CONFIG_VALUES = 100_000


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The options in a JSON (``.json``) or YAML (``.yaml``/``.yml``) file, as a dict.

    Only data is read, never code: YAML's plain types (mappings with string keys, lists,
    strings, numbers, booleans, null); any other tag (``!!python/...``, ``!!binary``, dates) is
    refused, as are files over :data:`MAX_CONFIG_BYTES`, nesting deeper than
    :data:`MAX_CONFIG_DEPTH` and more than :data:`MAX_CONFIG_VALUES` values after alias expansion.

    Raises:
        RnnlabError: one line naming the file, for every way it can be wrong.
    """
    path = Path(path)
    name = str(path) if str(path).isprintable() else repr(str(path))[1:-1]
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise RnnlabError(f"config file {name} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise RnnlabError(f"config file {name} is not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise RnnlabError(f"config file {name} is larger than {MAX_CONFIG_BYTES} bytes")
        data = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
    except FileNotFoundError:
        raise RnnlabError(f"config file {name} does not exist") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RnnlabError(f"cannot read config file {name}: {reason}") from None
    if len(data) > MAX_CONFIG_BYTES:  # it grew since stat
        raise RnnlabError(f"config file {name} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise RnnlabError(
            f"config file {name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start})"
        ) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        options = _read_yaml(text, name)
    else:
        options = _read_json(text, name)
    if not isinstance(options, dict):
        raise RnnlabError(
            f"config file {name} must hold a mapping of options, not {_kind_of(options)}"
        )
    return options


def _read_json(text: str, name: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RnnlabError(f"config file {name} is not valid JSON: {exc}") from None
    except RecursionError:
        raise RnnlabError(f"config file {name} nests deeper than {MAX_CONFIG_DEPTH}") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise RnnlabError(f"config file {name}: {str(exc).splitlines()[0][:100]}") from None
    budget = [MAX_CONFIG_VALUES]

    def check(value: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise RnnlabError(f"config file {name} holds more than {MAX_CONFIG_VALUES} values")
        if depth > MAX_CONFIG_DEPTH:
            raise RnnlabError(f"config file {name} nests deeper than {MAX_CONFIG_DEPTH}")
        if isinstance(value, dict):
            for item in value.values():
                check(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                check(item, depth + 1)

    check(data, 0)
    return data


def _read_yaml(text: str, name: str) -> Any:
    """YAML's data, built from its node graph by hand: only plain tags, bounded depth and size
    (aliases are counted each time they are used, so a "billion laughs" stops early)."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            if self.depth > MAX_CONFIG_DEPTH:
                raise RnnlabError(f"config file {name} nests deeper than {MAX_CONFIG_DEPTH}")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = None
    try:
        loader = Loader(text)  # checks the characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        budget = [MAX_CONFIG_VALUES]
        return _yaml_value(loader, node, name, budget, 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "").split())
        raise RnnlabError(f"config file {name} is not valid YAML: {problem}{where}") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise RnnlabError(f"config file {name} is not valid YAML: {first}") from None
    except RecursionError:
        raise RnnlabError(f"config file {name} nests deeper than {MAX_CONFIG_DEPTH}") from None
    finally:
        if loader is not None:
            loader.dispose()


_YAML = "tag:yaml.org,2002:"


def _yaml_value(loader: Any, node: Any, name: str, budget: list[int], depth: int) -> Any:
    import yaml

    budget[0] -= 1
    if budget[0] < 0:
        raise RnnlabError(
            f"config file {name} expands to more than {MAX_CONFIG_VALUES} values (YAML aliases?)"
        )
    if depth > MAX_CONFIG_DEPTH:
        raise RnnlabError(f"config file {name} nests deeper than {MAX_CONFIG_DEPTH}")
    line = node.start_mark.line + 1
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        if tag == _YAML + "str":
            return node.value
        construct = {
            _YAML + "null": loader.construct_yaml_null,
            _YAML + "bool": loader.construct_yaml_bool,
            _YAML + "int": loader.construct_yaml_int,
            _YAML + "float": loader.construct_yaml_float,
        }.get(tag)
        if construct is not None:
            try:
                return construct(node)
            except (ValueError, KeyError):  # !!int abc, !!bool maybe, 5000 digits
                raise RnnlabError(
                    f"config file {name} is not valid YAML: {node.value[:40]!r} is not a "
                    f"valid {tag.removeprefix(_YAML)} (line {line})"
                ) from None
    elif isinstance(node, yaml.SequenceNode) and tag == _YAML + "seq":
        return [_yaml_value(loader, item, name, budget, depth + 1) for item in node.value]
    elif isinstance(node, yaml.MappingNode) and tag == _YAML + "map":
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _YAML + "str"):
                raise RnnlabError(
                    f"config file {name} is not valid YAML for rnnlab: option names must be "
                    f"plain strings, got {key_node.tag.removeprefix(_YAML)[:60]!r} "
                    f"(line {key_node.start_mark.line + 1})"
                )
            out[key_node.value] = _yaml_value(loader, value_node, name, budget, depth + 1)
        return out
    shown = tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag
    raise RnnlabError(
        f"config file {name} is not valid YAML for rnnlab: unsupported tag {shown[:60]!r} "
        f"(line {line}; only mappings, lists, strings, numbers, booleans and null)"
    )


def write_config_file(path: Path | str, config: Config, **header: Any) -> None:
    """Write ``config`` (after ``header`` keys, e.g. ``task="lm"``) as JSON, atomically."""
    from rnnlab.train.checkpoint import atomic_write_text

    atomic_write_text(Path(path), json.dumps({**header, **config.to_meta()}, indent=2) + "\n")


# -- the command line ---------------------------------------------------------------------------
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


def walk(cls: type[Config], prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, _Kind]]:
    """Every scalar field of ``cls`` and its nested configs, with its dotted path."""
    for f, kind in _fields(cls):
        path = prefix + f.name
        if f.metadata.get("nested"):
            yield from walk(kind.base, path + ".")
        else:
            yield path, f, kind


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


def _default_instance(cls: type[Config]) -> Config | None:
    try:
        return cls()
    except TypeError:  # required (positional) fields
        return None


def _add_group(
    parser: argparse.ArgumentParser, cls: type[Config], defaults: Config | None, prefix: str,
    seen: set[str],
) -> None:  # fmt: skip
    doc = (cls.__doc__ or "").strip().splitlines()
    title = cls.title or (doc[0].rstrip(".") if doc else cls.__name__)
    group = parser.add_argument_group(title)
    later = []
    for f, kind in _fields(cls):
        default = getattr(defaults, f.name) if defaults is not None else None
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
    "add_arguments",
    "at_least",
    "fraction",
    "given",
    "nested",
    "non_negative",
    "option",
    "paths",
    "positive",
    "probability",
    "read_config_file",
    "resolve",
    "unit_interval",
    "walk",
    "write_config_file",
]

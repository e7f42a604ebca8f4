"""Config files: the options of ``--config FILE`` (JSON or YAML) and a run's ``config.json``.

Read safely: regular files up to 1 MiB, UTF-8, JSON or a YAML subset built from its node graph
by hand (mappings with string keys, lists, plain scalars; no tags; nesting and alias expansion
bounded), so that a hostile file is one :class:`~rnnlab.errors.RnnlabError` line and never runs
code. :func:`rnnlab.config.resolve` turns what is read into a config.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from rnnlab.config import Config, _kind_of
from rnnlab.errors import RnnlabError

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


__all__ = ["MAX_CONFIG_BYTES", "read_config_file", "write_config_file"]

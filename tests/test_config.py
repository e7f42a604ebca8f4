"""rnnlab.config: every option declared once; validation, meta, flags and files derived from it."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given as hgiven
from hypothesis import settings
from hypothesis import strategies as st

from rnnlab.config import Config, nested, option, positive, probability, resolve
from rnnlab.configfile import read_config_file
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.flags import add_arguments, given
from rnnlab.train.config import TrainConfig


@dataclass(frozen=True)
class Inner(Config):
    """Inner options."""

    size: int = option(4, check=positive, aliases=("--sz",), help="a size")
    on: bool = option(True, off_aliases=("--off",), help="a switch")


@dataclass(frozen=True)
class Outer(Config):
    """Outer options."""

    rate: float = option(0.5, check=probability, help="a rate")
    name: str = option("a", choices=("a", "b"), help="a name")
    limit: int | None = option(None, check=positive, group="limit", help="one limit")
    other: int | None = option(7, check=positive, group="limit", help="another limit")
    sizes: tuple[int, ...] = option((1, 2), help="sizes")
    inner: Inner = nested(Inner())


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_arguments(parser, Outer)
    return parser.parse_args(argv)


def test_validation_names_the_field() -> None:
    assert Outer().inner.size == 4
    for kwargs, message in [
        ({"rate": 1.0}, "rate must be in [0, 1), got 1.0"),
        ({"rate": "x"}, "rate must be a number, got 'x'"),
        ({"rate": float("nan")}, "rate must be a number"),
        ({"name": "c"}, "name must be one of a, b; got 'c'"),
        ({"limit": 0}, "limit must be > 0, got 0"),
        ({"limit": True}, "limit must be an integer"),
        ({"sizes": [1]}, "sizes must be a list of integers, got list"),
        ({"inner": {"size": 3}}, "inner must be a Inner"),
    ]:
        with pytest.raises(RnnlabError, match=re.escape(message)):
            Outer(**kwargs)
    with pytest.raises(RnnlabError, match="size must be > 0"):
        Inner(size=0)


def test_meta_round_trip_and_strict_keys() -> None:
    c = Outer(rate=0.25, sizes=(3,), inner=Inner(size=9, on=False))
    meta = c.to_meta()
    assert meta == json.loads(json.dumps(meta))  # JSON-able: tuples are lists
    assert meta["inner"] == {"size": 9, "on": False} and meta["sizes"] == [3]
    assert Outer.from_meta(meta) == c
    assert Outer.from_meta({}) == Outer()  # missing keys take their defaults
    assert Outer.from_meta({"rate": 0}).rate == 0.0  # an integer where a float is expected
    with pytest.raises(RnnlabError, match=r"x.json: unknown option 'rat' for Outer \(known: rate"):
        Outer.from_meta({"rat": 1}, "x.json")
    with pytest.raises(RnnlabError, match=r"x\.json: inner: unknown option 'big' for Inner"):
        Outer.from_meta({"inner": {"big": 1}}, "x.json")
    with pytest.raises(RnnlabError, match="expected a mapping of options, got list"):
        Outer.from_meta([1, 2])


@settings(max_examples=200, deadline=None)
@hgiven(
    st.dictionaries(
        st.sampled_from(["rate", "name", "limit", "other", "sizes", "inner", "junk"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-5, 5),
            st.floats(allow_nan=True),
            st.text(max_size=3),
            st.lists(st.integers(-2, 2), max_size=3),
            st.dictionaries(st.sampled_from(["size", "on", "x"]), st.integers(-2, 2), max_size=2),
        ),
        max_size=4,
    )
)
def test_from_meta_loads_or_raises_a_one_line_rnnlab_error(data: dict) -> None:
    """Any JSON-like input either gives a valid config or one RnnlabError line, never another
    exception."""
    try:
        c = Outer.from_meta(data, "f.json")
    except RnnlabError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("f.json")
    else:
        assert Outer.from_meta(c.to_meta()) == c


def test_flags_are_derived_with_aliases_and_only_given_values_are_set() -> None:
    ns = _parse(["--rate", "0.1", "--sz", "8", "--off", "--sizes", "4", "5"])
    assert given(ns, Outer) == {"rate": 0.1, "sizes": (4, 5), "inner": {"size": 8, "on": False}}
    assert given(_parse([]), Outer) == {}
    assert given(_parse(["--no-on"]), Outer) == {"inner": {"on": False}}
    assert given(_parse(["--on"]), Outer) == {"inner": {"on": True}}
    assert given(_parse(["--size", "2"]), Outer) == {"inner": {"size": 2}}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "2"], "argument --rate: expected a value in [0, 1), got '2'"),
        (["--rate", "nan"], "argument --rate: expected a number, got 'nan'"),
        (["--size", "x"], "argument --size/--sz: expected an integer, got 'x'"),
        (["--name", "c"], "argument --name: invalid choice: 'c'"),
    ],
)
def test_bad_flags_are_one_line_errors_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(argparse.ArgumentError) as exc:
        _parse(argv)
    assert message in str(exc.value)


def test_help_shows_every_default() -> None:
    parser = argparse.ArgumentParser(prog="t")
    add_arguments(parser, Outer)
    text = parser.format_help()
    for expected in ["a rate (default: 0.5)", "(default: none)", "(default: 1 2)", "(default: on)"]:
        assert expected in " ".join(text.split()), expected


def test_a_flag_declared_twice_is_a_programming_error() -> None:
    @dataclass(frozen=True)
    class Clash(Config):
        size: int = option(1, help="x")
        inner: Inner = nested(Inner())

    with pytest.raises(TypeError, match="flag --size is declared twice"):
        add_arguments(argparse.ArgumentParser(), Clash)


def test_resolve_layers_and_limit_groups() -> None:
    defaults = Outer(limit=None, other=7)
    # a later layer wins; the defaults stay where nothing is given
    c = resolve(Outer, {"rate": 0.2}, explicit=[{"rate": 0.3}], defaults=defaults)
    assert c.rate == 0.3 and c.other == 7
    # setting one limit explicitly clears the default of the other
    assert resolve(Outer, explicit=[{"limit": 5}], defaults=defaults).other is None
    assert resolve(Outer, explicit=[{"limit": 5, "other": 2}], defaults=defaults).other == 2
    # a saved run's values are not "explicit": they keep the group as it was
    assert resolve(Outer, {"limit": 5}, defaults=defaults).other == 7
    # limits in nested configs: TrainConfig's max_steps / max_epochs / time_budget
    base = TrainConfig(max_epochs=10, time_budget=60.0)
    t = resolve(TrainConfig, explicit=[{"max_steps": 4}], defaults=base)
    assert (t.max_steps, t.max_epochs, t.time_budget) == (4, None, None)


def test_config_files_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"rate": 0.2, "inner": {"size": 3}}')
    (tmp_path / "a.yaml").write_text("rate: 0.2\ninner:\n  size: 3\n")
    for name in ("a.json", "a.yaml"):
        c = resolve(Outer, explicit=[read_config_file(tmp_path / name)])
        assert (c.rate, c.inner.size) == (0.2, 3)
    for content, name, message in [
        ("{", "b.json", "is not valid JSON"),
        ("[1]", "c.json", "must hold a mapping of options, not list"),
        ("a: [", "d.yaml", "is not valid YAML"),
        (b"\xff\xfe", "e.json", "is not UTF-8"),
    ]:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(RnnlabError, match=message):
            read_config_file(path)
    with pytest.raises(RnnlabError, match="does not exist"):
        read_config_file(tmp_path / "none.json")
    # YAML is read safely: a Python object tag is refused, never constructed
    (tmp_path / "evil.yaml").write_text("rate: !!python/object/apply:os.system ['touch x']\n")
    with pytest.raises(RnnlabError, match="is not valid YAML"):
        read_config_file(tmp_path / "evil.yaml")


def test_recurrent_config_is_a_config_with_cell_checks() -> None:
    rc = RecurrentConfig(cell="gru", hidden_size=8, bidirectional=True)
    assert RecurrentConfig.from_meta(rc.to_meta()) == rc
    assert rc.describe() == "1x8 bidirectional gru"
    layer = rc.build(input_size=3)
    assert layer.input_size == 3 and layer.hidden_size == 8 and layer.bidirectional
    with pytest.raises(RnnlabError, match="unknown cell 'lstn'"):
        RecurrentConfig(cell="lstn")
    with pytest.raises(RnnlabError, match="forget_bias applies to LSTM cells with a forget gate"):
        RecurrentConfig(cell="gru", forget_bias=1.0)
    with pytest.raises(RnnlabError, match="backend must be one of"):
        RecurrentConfig(backend="cuda")

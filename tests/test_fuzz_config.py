"""Property-based tests of run-config files (``--config``, JSON and YAML): any file is read as
data or refused in one line; nothing in it runs, nothing explodes. ``RNNLAB_FUZZ_EXAMPLES``
raises the number of examples (default 200) for a long run.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.cli import main
from rnnlab.configfile import MAX_CONFIG_BYTES, read_config_file
from rnnlab.errors import RnnlabError
from rnnlab.train.config import TrainConfig

EXAMPLES = int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", 200))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)

# JSON-like values, including huge integers and floats that overflow
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.integers(min_value=10**300, max_value=10**400),
)
KEYS = st.one_of(
    st.sampled_from([f.name for f in TrainConfig.__dataclass_fields__.values()]),
    st.text(max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=12,
)
YAML_SNIPPETS = st.sampled_from(
    [
        "lr: 0.1\n",
        "lr: !!python/object/apply:os.system ['true']\n",
        "? [a]\n: 1\n",
        "a: &x 1\nb: *x\n",
        "lr: !!binary aGk=\n",
        "lr: 2001-13-45\n",
        "lr: !!int abc\n",
        "lr: !!bool maybe\n",
        "<<: {a: 1}\n",
        "lr: 1" + "0" * 5000 + "\n",
        "lr: .nan\n",
        "seed: 0x" + "f" * 40 + "\n",
        "- 1\n",
        "a: [\n",
        "\t",
        "lr: !!set {a}\n",
        "lr: !!omap [a: 1]\n",
        "!!python/name:os.system\n",
        "%YAML 1.1\n---\nlr: 1\n",
    ]
)


def one_line(exc: BaseException) -> str:
    assert isinstance(exc, RnnlabError), repr(exc)
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, message
    return message


def check_file(name: str, data: bytes) -> None:
    """The property: read as a dict of plain data, or one line; then a TrainConfig or one line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            options = read_config_file(path)
        except Exception as exc:
            assert name in one_line(exc)
            return
    assert isinstance(options, dict)
    json.dumps(options)  # plain data only (no sets, bytes, dates, objects)
    try:
        config = TrainConfig.from_meta(options, name)
    except Exception as exc:
        one_line(exc)
        return
    assert TrainConfig.from_meta(config.to_meta()) == config


@FUZZ
@given(value=VALUES, suffix=st.sampled_from([".json", ".yaml"]))
def test_any_json_value_as_a_config(value: object, suffix: str) -> None:
    check_file(f"c{suffix}", json.dumps(value).encode())  # JSON is YAML too (mostly)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=120).map(str.encode),
        st.lists(YAML_SNIPPETS, min_size=1, max_size=3).map(lambda parts: "".join(parts).encode()),
    ),
    suffix=st.sampled_from([".json", ".yaml", ".yml"]),
)
def test_any_bytes_as_a_config(data: bytes, suffix: str) -> None:
    check_file(f"c{suffix}", data)


def test_hostile_config_files_are_refused_quickly(tmp_path: Path) -> None:
    laughs = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    cases = {
        "laughs.yaml": ("\n".join(laughs) + "\n", "expands to more than"),
        "deep.yaml": ("a: " + "[" * 10000 + "]" * 10000 + "\n", "nests deeper than"),
        "deep.json": ('{"a": ' + "[" * 100000 + "]" * 100000 + "}", "nests deeper than"),
        "deepish.json": ('{"a": ' + "[" * 100 + "]" * 100 + "}", "nests deeper than"),
        "digits.json": ('{"seed": ' + "9" * 5000 + "}", "digits"),
        "big.json": ('{"a": "' + "x" * MAX_CONFIG_BYTES + '"}', "larger than"),
        "evil.yaml": ("lr: !!python/object/apply:os.system ['touch x']\n", "unsupported tag"),
        "date.yaml": ("lr: 2001-13-45\n", "unsupported tag 'timestamp'"),
        "key.yaml": ("? [a]\n: 1\n", "option names must be plain strings"),
        "int.yaml": ("lr: !!int abc\n", "'abc' is not a valid int"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        start = time.perf_counter()
        with pytest.raises(RnnlabError, match=message) as info:
            read_config_file(tmp_path / name)
        one_line(info.value)
        assert time.perf_counter() - start < 5, name
    (tmp_path / "anchors.yaml").write_text("x: &lr 0.5\nlr: *lr\n")
    assert read_config_file(tmp_path / "anchors.yaml") == {"x": 0.5, "lr": 0.5}
    with pytest.raises(RnnlabError, match=r"lr must be a number, got a 1329-bit integer"):
        TrainConfig.from_meta({"lr": 10**400})


class Payload:
    """Pickled, this runs ``touch MARKER`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".pkl"])
def test_pickled_or_tagged_config_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, protocol: int, suffix: str
) -> None:
    """No code runs on load: a pickle, or YAML with a Python tag, given as --config."""
    marker = tmp_path / "pwned"
    config = tmp_path / f"config{suffix}"
    config.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
    yaml_config = tmp_path / "tagged.yaml"
    yaml_config.write_text(f"lr: !!python/object/apply:os.system ['touch {marker}']\n")
    for path in (config, yaml_config):
        argv = [
            "train",
            "lm",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--max-steps",
            "1",
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnlab: error: config file") and err.count("\n") == 1, err
    assert not marker.exists() and not (tmp_path / "run").exists()

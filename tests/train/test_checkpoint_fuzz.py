"""Hostile checkpoint files: each either loads or raises a one-line RnnlabError, quickly and
without allocating what the files do not hold. Never another exception, a hang or a blow-up.

``RNNLAB_FUZZ_EXAMPLES`` sets the examples per test (default 200), e.g. for a long run::

    RNNLAB_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/train/test_checkpoint_fuzz.py
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import signal
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

EXAMPLES = int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FILES = ("meta.json", "model.safetensors", "training.json", "training.safetensors")
SECONDS = 10  # per load: far above the milliseconds one takes; a hang fails instead of waiting
MEMORY_KIB = 1 << 20  # 1 GiB more than at import: far below any "huge size" the fuzzer declares
_BASE_RSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
_SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@functools.cache
def _valid() -> dict[str, bytes]:
    """The files of a real checkpoint: tied weights, Adam state, int-keyed dicts, RNG state."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5))
    model[1].weight = model[0].weight
    opt = torch.optim.Adam(model.parameters())
    model(torch.tensor([1, 2])).sum().backward()
    opt.step()
    state = {"step": 3, "by_int": {2: torch.ones(2)}, "rng": torch.get_rng_state()}
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as d:
        save_checkpoint(Path(d) / "ck", model, {"task": "x", "vocab": ["a"]}, state, opt)
        return {name: (Path(d) / "ck" / name).read_bytes() for name in FILES}


def _with_checksums(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with meta.json's checksums made to match the other files, so that their
    parsers (not the checksum) meet the damage."""
    doc = json.loads(files["meta.json"])
    doc["checkpoint"]["sha256"] = {
        n: hashlib.sha256(files[n]).hexdigest() for n in FILES if n != "meta.json"
    }
    return {**files, "meta.json": json.dumps(doc).encode()}


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang


def _loads_or_one_line_error(files: dict[str, bytes]) -> Checkpoint | None:
    """Write ``files`` as a checkpoint and load it: a Checkpoint, or None after a one-line
    RnnlabError. Fails on any other exception, a load over SECONDS, or memory growth."""
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as d:
        ck = Path(d) / "ck"
        ck.mkdir()
        for name, data in files.items():
            (ck / name).write_bytes(data)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, SECONDS)
        try:
            loaded = load_checkpoint(ck)
        except RnnlabError as exc:
            assert "\n" not in str(exc) and str(ck) in str(exc), str(exc)
            loaded = None
        except _Hang:
            pytest.fail(f"loading took over {SECONDS} s")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _BASE_RSS
    assert grown < MEMORY_KIB, f"memory grew by {grown} KiB"
    if loaded is not None:
        assert isinstance(loaded.meta, dict)
        assert all(isinstance(t, Tensor) for t in loaded.state_dict.values())
    return loaded


def test_the_valid_checkpoint_loads() -> None:  # the oracle the fuzz tests start from
    loaded = _loads_or_one_line_error(_valid())
    assert loaded is not None and loaded.training_state["step"] == 3
    assert loaded.training_state["by_int"][2].tolist() == [1.0, 1.0]


@FUZZ
@given(which=st.sampled_from(FILES), data=st.binary(max_size=4096), fix=st.booleans())
def test_arbitrary_bytes_in_any_file(which: str, data: bytes, fix: bool) -> None:
    files = {**_valid(), which: data}
    if fix and which != "meta.json":
        files = _with_checksums(files)
    _loads_or_one_line_error(files)


@FUZZ
@given(which=st.sampled_from(FILES), cut=st.floats(0, 1, exclude_max=True), fix=st.booleans())
def test_truncated_files(which: str, cut: float, fix: bool) -> None:
    files = dict(_valid())
    files[which] = files[which][: int(cut * len(files[which]))]
    if fix and which != "meta.json":
        files = _with_checksums(files)
    assert _loads_or_one_line_error(files) is None  # a truncated file never loads


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["model.safetensors", "__tensor__", "__items__", "step", "1"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _places(obj: Any, at: tuple = ()) -> Iterator[tuple]:
    """Every path into a JSON document (the root included)."""
    yield at
    if isinstance(obj, dict):
        items: Any = obj.items()
    else:
        items = enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from _places(value, (*at, key))


def _replaced(obj: Any, at: tuple, value: Any) -> Any:
    if not at:
        return value
    copy = dict(obj) if isinstance(obj, dict) else list(obj)
    copy[at[0]] = _replaced(obj[at[0]], at[1:], value)
    return copy


@FUZZ
@given(
    which=st.sampled_from(["meta.json", "training.json"]),
    pick=st.integers(min_value=0),
    value=JSON_VALUES,
    wrap=st.sampled_from(["value", "tensor_ref", "items"]),
)
def test_valid_json_with_wrong_types(which: str, pick: int, value: Any, wrap: str) -> None:
    files = dict(_valid())
    doc = json.loads(files[which])
    places = list(_places(doc))
    value = {"value": value, "tensor_ref": {"__tensor__": value}, "items": {"__items__": value}}[
        wrap
    ]
    doc = _replaced(doc, places[pick % len(places)], value)
    files[which] = json.dumps(doc).encode()
    if which == "training.json":
        files = _with_checksums(files)
    _loads_or_one_line_error(files)


@pytest.mark.parametrize(
    "where, value",
    [
        (("checkpoint", "sha256"), ["model.safetensors"]),  # a traceback in rnnlab 0.2
        (("checkpoint", "sha256", "model.safetensors"), ["abc"]),
        (("checkpoint", "sha256"), {}),
        (("checkpoint", "format_version"), "1"),
        (("checkpoint", "format_version"), True),
        (("checkpoint", "format_version"), 1.0),
        (("checkpoint", "format_version"), 10**400),
        (("checkpoint", "aliases"), ["1.weight"]),
        (("checkpoint", "aliases"), {"1.weight": "nope"}),
        (("checkpoint", "aliases"), {"1.weight": 0}),
        (("checkpoint", "rnnlab_version"), {"x": 1}),
        (("checkpoint",), []),
        (("meta",), "text"),
        ((), [1, 2]),
    ],
)
def test_meta_json_with_wrong_types(where: tuple, value: Any) -> None:
    files = dict(_valid())
    doc = _replaced(json.loads(files["meta.json"]), where, value)
    files["meta.json"] = json.dumps(doc).encode()
    assert _loads_or_one_line_error(files) is None


@pytest.mark.parametrize(
    "value",
    [
        {"step": {"__tensor__": "no such tensor"}},
        {"step": {"__tensor__": ["rng"]}},
        {"step": {"__items__": "not a list"}},
        {"step": {"__items__": [[1]]}},
        {"step": {"__items__": [[[1], 2]]}},  # an unhashable key
        {"step": {"__items__": [[{"a": 1}, 2]]}},
        {"step": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]},  # deep, but well within limits
    ],
)
def test_training_json_with_wrong_types(value: Any) -> None:
    files = _with_checksums({**_valid(), "training.json": json.dumps(value).encode()})
    loaded = _loads_or_one_line_error(files)
    assert loaded is None or "deep" in json.dumps(value) or isinstance(value["step"], list)


def test_deeply_nested_json() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert _loads_or_one_line_error(_with_checksums({**_valid(), "training.json": deep})) is None
    assert _loads_or_one_line_error({**_valid(), "meta.json": deep}) is None


def _split(blob: bytes) -> tuple[dict, bytes]:
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


BIG_INTS = st.integers(min_value=-1, max_value=2**64 + 1) | st.sampled_from(
    [0, 1, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
)


@FUZZ
@given(
    which=st.sampled_from(["model.safetensors", "training.safetensors"]),
    pick=st.integers(min_value=0),
    field=st.sampled_from(["dtype", "shape", "data_offsets", "length", "drop_body"]),
    ints=st.lists(BIG_INTS, max_size=5),
    dtype=st.sampled_from(["F32", "F64", "I64", "U8", "BOOL", "F16", "XYZ", "", "F4"]),
    fix=st.booleans(),
)
def test_safetensors_headers_that_lie(
    which: str, pick: int, field: str, ints: list[int], dtype: str, fix: bool
) -> None:
    files = dict(_valid())
    header, body = _split(files[which])
    names = sorted(k for k in header if k != "__metadata__")
    entry = header[names[pick % len(names)]]
    if field == "dtype":
        entry["dtype"] = dtype
    elif field in ("shape", "data_offsets"):
        entry[field] = ints
    elif field == "drop_body":
        body = body[: len(body) // 2]
    blob = _join(header, body)
    if field == "length":  # the 8-byte header size, e.g. 2**63: must not be allocated
        blob = struct.pack("<Q", (ints or [2**63])[0] % 2**64) + blob[8:]
    files[which] = blob
    if fix:
        files = _with_checksums(files)
    _loads_or_one_line_error(files)


@pytest.mark.parametrize(
    "lie",
    [
        "header_size_2**63",
        "header_size_file+1",
        "shape_2**40x2**40",
        "shape_0x2**62",
        "offsets_beyond_the_file",
        "offsets_reversed",
        "overlapping_tensors",
    ],
)
def test_huge_or_inconsistent_declared_sizes(lie: str) -> None:
    files = dict(_valid())
    blob = files["model.safetensors"]
    header, body = _split(blob)
    name = sorted(k for k in header if k != "__metadata__")[0]
    other = sorted(k for k in header if k != "__metadata__")[-1]
    if lie == "header_size_2**63":
        blob = struct.pack("<Q", 2**63) + blob[8:]
    elif lie == "header_size_file+1":
        blob = struct.pack("<Q", len(blob) - 7) + blob[8:]
    else:
        if lie == "shape_2**40x2**40":
            header[name]["shape"] = [2**40, 2**40]
        elif lie == "shape_0x2**62":
            header[name]["shape"] = [0, 2**62]
        elif lie == "offsets_beyond_the_file":
            header[name]["data_offsets"] = [0, 2**62]
        elif lie == "offsets_reversed":
            header[name]["data_offsets"] = header[name]["data_offsets"][::-1]
        else:
            header[name]["data_offsets"] = header[other]["data_offsets"]
            header[name]["shape"] = header[other]["shape"]
        blob = _join(header, body)
    files = _with_checksums({**files, "model.safetensors": blob})
    assert _loads_or_one_line_error(files) is None


def test_fifo_or_directory_in_place_of_a_file(tmp_path: Path) -> None:
    for name in ("meta.json", "model.safetensors"):
        ck = tmp_path / name.replace(".", "_")
        ck.mkdir()
        for n, data in _valid().items():
            (ck / n).write_bytes(data)
        (ck / name).unlink()
        # reading a FIFO with no writer would hang; a meta.json that is not a file is not there
        expected = "holds no checkpoint" if name == "meta.json" else "not a regular file"
        os.mkfifo(ck / name)
        with pytest.raises(RnnlabError, match=expected):
            load_checkpoint(ck)
        (ck / name).unlink()
        (ck / name).mkdir()
        with pytest.raises(RnnlabError, match=expected):
            load_checkpoint(ck)

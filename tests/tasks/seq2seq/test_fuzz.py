"""Property-based tests of the sentence-pair reader: any file loads as written or fails in one
line. ``RNNLAB_FUZZ_EXAMPLES`` raises the number of examples (default 200) for a long run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.errors import RnnlabError
from rnnlab.tasks.seq2seq.data import Pair, read_pairs
from tests.tasks.helpers import FUZZ, one_line

SIDE = st.text(
    st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=12
).filter(str.strip)


@FUZZ
@given(
    pairs=st.lists(st.tuples(SIDE, SIDE), min_size=1, max_size=6),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
)
def test_pair_files_read_back(pairs: list[tuple[str, str]], eol: str, bom: bool) -> None:
    text = "".join(f"{s}\t{t}{eol}" for s, t in pairs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.tsv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        assert read_pairs(path) == [Pair(s.strip(), t.strip()) for s, t in pairs]


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=100).map(str.encode)))
def test_any_pair_file_loads_or_fails_in_one_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.tsv"
        path.write_bytes(data)
        try:
            pairs = read_pairs(path)
        except Exception as exc:
            assert "p.tsv" in one_line(exc)
            return
    assert pairs and all(p.source and p.target for p in pairs)


def test_pair_file_errors_name_the_place(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_bytes(b"hi\tsalut\nbye\tau revoir \xe0 demain\n")
    with pytest.raises(
        RnnlabError,
        match=r"p\.tsv is not UTF-8 text \(byte 0xe0 at offset 23, "
        r"line 2\)",
    ) as info:
        read_pairs(path)
    one_line(info.value)

"""Property-based tests of the CoNLL reader: any file loads as written or fails in one line.

``RNNLAB_FUZZ_EXAMPLES`` raises the number of examples (default 200) for a long run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.errors import RnnlabError
from rnnlab.tasks.tag.data import Tagged, read_conll
from tests.tasks.helpers import FUZZ, one_line

WORD = st.text(
    st.characters(blacklist_categories=["Cs", "Cc", "Zs", "Zl", "Zp"]), min_size=1, max_size=6
)
SEQUENCES = st.lists(
    st.lists(st.tuples(WORD, WORD), min_size=1, max_size=5).map(
        lambda pairs: Tagged(tuple(t for t, _ in pairs), tuple(g for _, g in pairs))
    ),
    max_size=4,
)


@FUZZ
@given(sequences=SEQUENCES, eol=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans())
def test_conll_files_read_back(sequences: list[Tagged], eol: str, bom: bool) -> None:
    """The oracle: sequences written in CoNLL style (any line ending, a BOM) read back."""
    text = "".join(
        "".join(f"{t}\t{g}{eol}" for t, g in zip(s.tokens, s.tags)) + eol for s in sequences
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.conll"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        if not sequences:
            with pytest.raises(RnnlabError, match="has no sequences"):
                read_conll(path)
            return
        assert read_conll(path) == sequences


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=100).map(str.encode)))
def test_any_conll_file_loads_or_fails_in_one_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.conll"
        path.write_bytes(data)
        try:
            sequences = read_conll(path)
        except Exception as exc:
            assert "d.conll" in one_line(exc)
            return
    assert sequences and all(s.tokens and len(s.tokens) == len(s.tags) for s in sequences)


def test_conll_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.conll"
    path.write_bytes(b"a\tX\r\nb\tY\r\n\r\nc\xe9\tZ\r\n")
    with pytest.raises(
        RnnlabError,
        match=r"d\.conll is not UTF-8 text \(byte 0xe9 at offset 13, "
        r"line 4\)",
    ):
        read_conll(path)
    path.write_bytes(b"a\tX\nb Y\n")
    with pytest.raises(RnnlabError, match=r"d\.conll:2: expected token<TAB>tag"):
        read_conll(path)

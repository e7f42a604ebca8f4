"""Property-based tests of the language model's corpus reader: any file loads or fails in one line.

``RNNLAB_FUZZ_EXAMPLES`` raises the number of examples (default 200) for a long run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.errors import RnnlabError
from rnnlab.tasks.lm.data import build_vocab, encode_text, read_corpus
from tests.tasks.helpers import FUZZ, one_line

#: raw bytes, or text in UTF-8 with a byte-order mark, odd line endings and NUL bytes
FILES = st.one_of(
    st.binary(max_size=400),
    st.builds(
        lambda text, bom, eol: bom + text.replace("\n", eol).encode("utf-8"),
        st.text(max_size=200),
        st.sampled_from([b"", b"\xef\xbb\xbf"]),
        st.sampled_from(["\n", "\r\n", "\r", "\x00\n"]),
    ),
)


@FUZZ
@given(data=FILES, tokenizer=st.sampled_from(["chars", "words"]))
def test_any_corpus_file_loads_or_fails_in_one_line(data: bytes, tokenizer: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_bytes(data)
        try:
            text = read_corpus(path)
        except RnnlabError as exc:
            one_line(exc)
            assert "corpus.txt" in str(exc)
            body = data.removeprefix(b"\xef\xbb\xbf")
            try:
                decoded = body.decode("utf-8")
            except UnicodeDecodeError:
                assert "not UTF-8" in str(exc) and "offset" in str(exc)
            else:
                assert not decoded.strip() and "is empty" in str(exc)
            return
    assert text == data.removeprefix(b"\xef\xbb\xbf").decode("utf-8") and text.strip()
    vocab = build_vocab(text, tokenizer)
    ids = encode_text(vocab, text, tokenizer)
    if tokenizer == "chars":  # the oracle: characters round-trip exactly
        assert "".join(vocab.decode(ids.tolist())) == text
    else:
        assert ids.min() >= 0 and ids.max() < len(vocab)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    """A folder, a device (which would never end) and a pipe (which would block) are refused."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, message in [
        (tmp_path, "is a directory"),
        (Path("/dev/zero"), "regular file"),
        (fifo, "regular file"),
        (tmp_path / "a\nb", "no such file"),
    ]:
        with pytest.raises(RnnlabError, match=message) as info:
            read_corpus(path)
        one_line(info.value)

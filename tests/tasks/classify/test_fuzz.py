"""Property-based tests of the classification readers: a folder of class files (file names,
empty files, bytes that are not UTF-8, odd line endings, NUL bytes) and labelled TSV/CSV files.
Any input loads as it should or fails with one line; ``RNNLAB_FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import csv
import io
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rnnlab.errors import RnnlabError
from rnnlab.tasks.classify.data import read_class_dir, read_examples, read_labelled
from tests.tasks.helpers import FUZZ, one_line

EOLS = st.sampled_from(["\n", "\r\n", "\r"])
CONTENT = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda lines, eol: eol.join(lines).encode("utf-8"),
        st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=12), max_size=6),
        EOLS,
    ),
)
# file names: letters, odd characters, control characters, a byte that is not UTF-8
STEMS = st.one_of(
    st.text(
        st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
        min_size=1,
        max_size=12,
    ),
    st.just("caf\udce9"),  # os.fsdecode(b"caf\xe9")
)


def expected_examples(data: bytes) -> list[str]:
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [c for c in (unicodedata.normalize("NFC", line.strip()) for line in lines) if c]


def bad(stem: str, data: bytes) -> bool:
    """Whether a class file must be refused: its name is no label, or it holds no example."""
    if not stem.isprintable() or not stem.strip() or "\udce9" in stem:
        return True
    try:
        return not expected_examples(data)
    except UnicodeDecodeError:
        return True


@FUZZ
@given(files=st.dictionaries(STEMS, CONTENT, max_size=4))
def test_any_folder_of_class_files_loads_or_fails_in_one_line(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for stem, data in files.items():
            try:
                (folder / f"{stem}.txt").write_bytes(data)
            except OSError:  # the name is too long for this file system
                assume(False)
        try:
            examples = read_examples(folder)
        except Exception as exc:
            message = one_line(exc)
            assert not files or any(bad(stem, data) for stem, data in files.items()), message
            return
    by_label: dict[str, list[str]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e.text)
    # the oracle: every file decodes, each class holds exactly its non-blank lines, in order
    assert by_label == {stem: expected_examples(data) for stem, data in files.items()}


def test_class_folder_errors_name_the_file_and_the_place(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"Smith\r\nJones\x00\r\n")
    (tmp_path / "b.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(
        RnnlabError,
        match=r"b\.txt is not UTF-8 text \(byte 0xe9 at offset 6, "
        "line 2\\)",
    ) as info:
        read_class_dir(tmp_path)
    one_line(info.value)
    (tmp_path / "b.txt").write_bytes(b"\n\n")
    with pytest.raises(RnnlabError, match=r"b\.txt is empty"):
        read_class_dir(tmp_path)
    (tmp_path / "b.txt").unlink()
    (tmp_path / "x\ny.txt").write_text("z\n")
    with pytest.raises(RnnlabError, match="not a usable label") as info:
        read_class_dir(tmp_path)
    one_line(info.value)
    (tmp_path / "x\ny.txt").unlink()
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(RnnlabError, match="is a directory"):
        read_class_dir(tmp_path)
    (tmp_path / "dir.txt").rmdir()
    assert [(e.text, e.label) for e in read_class_dir(tmp_path)] == [
        ("Smith", "a"),
        ("Jones\x00", "a"),
    ]


ROWS = st.lists(
    st.tuples(
        st.text(st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=10),
        st.text(st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=6),
    ),
    max_size=6,
)


@FUZZ
@given(rows=ROWS, suffix=st.sampled_from([".tsv", ".csv", ".txt"]), eol=EOLS)
def test_labelled_files_written_by_csv_read_back(rows: list, suffix: str, eol: str) -> None:
    """The oracle: a file that Python's csv module writes reads back as its rows."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="," if suffix == ".csv" else "\t", lineterminator=eol).writerows(
        rows
    )
    good = [(unicodedata.normalize("NFC", t.strip()), lab.strip()) for t, lab in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        try:
            examples = read_labelled(path)
        except Exception as exc:
            message = one_line(exc)
            # refused only when some row has an empty side, or there is no row at all
            assert any(not t or not lab for t, lab in good) or not good, message
            return
    assert [(e.text, e.label) for e in examples] == [(t, lab) for t, lab in good if t or lab]


@FUZZ
@given(data=CONTENT, suffix=st.sampled_from([".tsv", ".csv"]))
def test_any_labelled_file_loads_or_fails_in_one_line(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_bytes(data)
        try:
            examples = read_examples(path)
        except Exception as exc:
            assert f"d{suffix}" in one_line(exc)
            return
    assert examples and all(e.text and e.label for e in examples)


def test_labelled_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b'a,x\n"' + b"y" * 200_000 + b'",x\n')
    with pytest.raises(RnnlabError, match=r"d\.csv:2: field larger than field limit"):
        read_labelled(path)
    path.write_bytes(b"a,x\nb,\xff\n")
    with pytest.raises(RnnlabError, match=r"not UTF-8 text \(byte 0xff at offset 6, line 2\)"):
        read_labelled(path)
    with pytest.raises(FileNotFoundError, match="no such file or folder") as info:
        read_examples(tmp_path / "missing.tsv")
    one_line(info.value)

"""Property-based tests of the captions folder and its images: rows naming missing files or
paths outside the folder, images of the wrong size or format, random bytes. Any folder loads as
written or fails in one line; ``RNNLAB_FUZZ_EXAMPLES`` raises the number of examples (200).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from rnnlab.errors import RnnlabError
from rnnlab.tasks.caption.data import IMAGE_SIZE, load_dataset, load_image
from tests.tasks.helpers import FUZZ, one_line


def encoded(size: int, fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), 7).save(buffer, format=fmt)
    return buffer.getvalue()


GOOD = encoded(IMAGE_SIZE, "PNG")
IMAGES = st.one_of(
    st.just(GOOD),
    st.sampled_from(
        [
            encoded(IMAGE_SIZE, "PNG", "L"),
            encoded(IMAGE_SIZE, "BMP"),
            encoded(IMAGE_SIZE + 1, "PNG"),
            encoded(IMAGE_SIZE, "TIFF"),
            encoded(IMAGE_SIZE, "GIF", "P"),
        ]
    ),
    st.binary(max_size=100),
    st.integers(0, len(GOOD) - 1).map(lambda n: GOOD[:n]),  # truncated
    st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)).map(
        lambda p: GOOD[: p[0]] + bytes([p[1]]) + GOOD[p[0] + 1 :]  # one byte changed
    ),
)
NAMES = st.one_of(
    st.sampled_from(
        [
            "a.png",
            "b.png",
            "../a.png",
            "/etc/passwd",
            "sub/../a.png",
            ".",
            "",
            "missing.png",
            "a.png\x00",
            "sub",
        ]
    ),
    st.text(max_size=8),
)


@FUZZ
@given(
    images=st.dictionaries(st.sampled_from(["a.png", "b.png"]), IMAGES, max_size=2),
    rows=st.lists(st.tuples(NAMES, st.text(max_size=8)), max_size=4),
    raw=st.one_of(st.none(), st.binary(max_size=60)),
)
def test_any_captions_folder_loads_or_fails_in_one_line(
    images: dict[str, bytes], rows: list[tuple[str, str]], raw: bytes | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "set"
        (folder / "sub").mkdir(parents=True)
        (root / "a.png").write_bytes(GOOD)  # outside the folder: must never be read
        for name, data in images.items():
            (folder / name).write_bytes(data)
        index = raw if raw is not None else "".join(f"{n}\t{c}\n" for n, c in rows).encode()
        (folder / "captions.tsv").write_bytes(index)
        try:
            arrays, captions = load_dataset(folder)
        except Exception as exc:
            one_line(exc)
            return
    assert arrays.shape == (len(captions), IMAGE_SIZE, IMAGE_SIZE, 3) and arrays.dtype == np.uint8
    if raw is None:  # the oracle: only rows naming a good image inside the folder load
        listed = [(n, c) for n, c in rows if (n + c).strip()]
        assert all(images.get(n.removeprefix("sub/../")) is not None for n, _ in listed)
        assert captions == [c.split() for _, c in listed]


def test_image_errors(tmp_path: Path) -> None:
    cases = {
        "big.png": (encoded(4000, "PNG", "1"), "expected a 36x36 image, got 4000x4000"),
        "bytes.png": (b"\x89PNG\r\n\x1a\nnot really", "is not a readable image"),
        "eps.png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 36 36\n", "not a readable"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RnnlabError, match=message) as info:
            load_image(tmp_path / name)
        one_line(info.value)
    with pytest.raises(FileNotFoundError, match="no such image"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "captions.tsv").write_text("../big.png\ta caption\n")
    with pytest.raises(
        RnnlabError,
        match=r"captions\.tsv:1: image '\.\./big\.png' is not a file "
        "inside the dataset folder",
    ):
        load_dataset(tmp_path / "set")

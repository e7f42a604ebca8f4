"""The synthetic captioning set: consistent captions, held-out combinations, image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnnlab.errors import RnnlabError
from rnnlab.tasks.caption.data import (
    HELD_OUT,
    IMAGE_SIZE,
    generate,
    load_dataset,
    load_image,
    save_dataset,
    save_image,
)


def test_captions_are_consistent_and_splits_hold_out_combinations() -> None:
    images, captions = generate(300, "train", seed=0)
    assert images.shape == (300, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    held = {f"{c} {k}" for c, k in HELD_OUT}
    for cap in captions:
        text = " ".join(cap)
        assert text.startswith("a ") and not any(h in text for h in held)
        assert len(cap) in (3, 7, 10, 11, 17)
    _, held_captions = generate(100, "heldout", seed=0)
    assert all(any(h in " ".join(c) for h in held) for c in held_captions)
    again, _ = generate(300, "train", seed=0)
    assert np.array_equal(images, again)


def test_image_files_roundtrip_and_errors(tmp_path: Path) -> None:
    images, captions = generate(3, "test", seed=0)
    save_dataset(images, captions, tmp_path / "set")
    loaded, loaded_captions = load_dataset(tmp_path / "set")
    assert np.array_equal(loaded, images) and loaded_captions == captions
    save_image(np.zeros((20, 30, 3), np.uint8), tmp_path / "small.png")
    with pytest.raises(RnnlabError, match="expected a 36x36 image, got 30x20"):
        load_image(tmp_path / "small.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(RnnlabError, match="not a readable image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(RnnlabError, match="is a file, not a folder"):
        save_dataset(images, captions, tmp_path / "bad.png")

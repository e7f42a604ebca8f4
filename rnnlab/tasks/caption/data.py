"""A synthetic image-captioning set: small images of coloured shapes and their captions.

Real photographs are not available offline, so rnnlab generates its captioning data. An image
is ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGB on a dark background, divided into a 3 x 3 grid; a scene
holds one shape, or two or three shapes in one row or one column, each a colour and a kind with
a random size and a small random offset. The caption is a function of the image, so that exact
match is a meaningful metric: shapes are named top to bottom (a column) or left to right (a row)::

    a red circle
    a red circle above a blue square
    a green triangle to the left of a yellow circle to the left of a red square

Generalisation is tested on held-out combinations of attributes: the colour-and-kind pairs in
:data:`HELD_OUT` never occur in the ``train`` split (nor in ``test``, the in-distribution test
split); every scene of the ``heldout`` split contains at least one of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab.data.tokenize import MissingFileError, read_text, shown, split_lines
from rnnlab.errors import RnnlabError
from rnnlab.tasks.caption.config import SPLITS

IMAGE_SIZE = 36
GRID = 3
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 235),
    "yellow": (235, 210, 40),
}
KINDS = ("circle", "square", "triangle")
#: (colour, kind) pairs absent from the training and in-distribution test splits.
HELD_OUT: tuple[tuple[str, str], ...] = (
    ("red", "square"),
    ("green", "triangle"),
    ("blue", "circle"),
)
#: Seeds offset per split so that the splits never share a random stream.
_SPLIT_SEED = {"train": 0, "test": 1_000_003, "heldout": 2_000_003}


@dataclass(frozen=True)
class Shape:
    colour: str
    kind: str
    row: int
    col: int
    radius: float  # half the shape's extent, in pixels
    dx: float  # offset of the centre from its grid cell's centre, in pixels
    dy: float


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]

    def caption(self) -> list[str]:
        """The caption's tokens (without ``<start>``/``<end>``)."""
        shapes = sorted(self.shapes, key=lambda s: (s.row, s.col))
        vertical = len(shapes) > 1 and shapes[0].col == shapes[1].col
        relation = ["above"] if vertical else ["to", "the", "left", "of"]
        words: list[str] = []
        for i, s in enumerate(shapes):
            if i:
                words += relation
            words += ["a", s.colour, s.kind]
        return words


def _allowed(split: str) -> list[tuple[str, str]]:
    pairs = [(c, k) for c in COLOURS for k in KINDS]
    return [p for p in pairs if p not in HELD_OUT]


def random_scene(rng: random.Random, split: str = "train") -> Scene:
    """One scene of ``split`` (see the module doc for what each split may contain)."""
    if split not in SPLITS:
        raise RnnlabError(f"unknown split {split!r}; choose one of {SPLITS}")
    n = rng.choice((1, 2, 2, 3))  # two-shape scenes are the most varied, so the most frequent
    if n == 1:
        cells = [(rng.randrange(GRID), rng.randrange(GRID))]
    else:
        line = rng.randrange(GRID)
        positions = sorted(rng.sample(range(GRID), 2)) if n == 2 else list(range(GRID))
        if rng.random() < 0.5:  # a column
            cells = [(p, line) for p in positions]
        else:  # a row
            cells = [(line, p) for p in positions]
    attributes = [rng.choice(_allowed(split)) for _ in cells]
    if split == "heldout":
        attributes[rng.randrange(n)] = rng.choice(HELD_OUT)
    cell = IMAGE_SIZE / GRID
    shapes = []
    for (row, col), (colour, kind) in zip(cells, attributes):
        radius = rng.uniform(0.30, 0.42) * cell
        slack = cell / 2 - radius - 0.5
        shapes.append(
            Shape(
                colour,
                kind,
                row,
                col,
                radius,
                rng.uniform(-slack, slack),
                rng.uniform(-slack, slack),
            )
        )
    return Scene(tuple(shapes))


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene's image: uint8 (size, size, 3)."""
    image = np.full((size, size, 3), 16, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cell = size / GRID
    for s in scene.shapes:
        cy = (s.row + 0.5) * cell + s.dy * size / IMAGE_SIZE
        cx = (s.col + 0.5) * cell + s.dx * size / IMAGE_SIZE
        r = s.radius * size / IMAGE_SIZE
        if s.kind == "circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif s.kind == "square":
            half = r * 0.85
            mask = (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
        else:  # triangle, pointing up, apex at the top
            top, bottom = cy - r, cy + r * 0.8
            half_width = (yy - top) / (bottom - top) * r
            mask = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)
        image[mask] = COLOURS[s.colour]
    return image


def generate(n: int, split: str = "train", seed: int = 0) -> tuple[np.ndarray, list[list[str]]]:
    """``n`` images (uint8 (n, H, W, 3)) and their captions, reproducible from ``seed``."""
    rng = random.Random(seed + _SPLIT_SEED.get(split, 0))
    scenes = [random_scene(rng, split) for _ in range(n)]
    images = (
        np.stack([render(s) for s in scenes])
        if scenes
        else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    )
    return images, [s.caption() for s in scenes]


# -- files ----------------------------------------------------------------------------------------
def save_image(image: np.ndarray, path: Path | str) -> Path:
    """Write a uint8 (H, W, 3) image as PNG."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(path)
    return path


#: The image formats read (PIL opens many more, some through external programs: refused).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")


def load_image(path: Path | str, size: int = IMAGE_SIZE) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP or GIF) as uint8 (size, size, 3) RGB.

    The declared size is checked before any pixel is decoded, so a file that claims to be
    huge costs nothing.

    Raises:
        RnnlabError: if the file is missing, not a readable image of those formats, or is not
            ``size`` x ``size``.
    """
    import warnings

    from PIL import Image

    path = Path(path)
    name = shown(path)
    try:
        regular = path.is_file()
    except (OSError, ValueError):
        regular = False
    if not regular:
        raise MissingFileError(f"no such image: {name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's warnings on odd files: we check the size
            with Image.open(path, formats=IMAGE_FORMATS) as img:
                width, height = img.size
                if (width, height) != (size, size):
                    raise RnnlabError(
                        f"{name}: expected a {size}x{size} image, got {width}x{height} "
                        "(make images with `rnnlab data captions`)"
                    )
                array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except RnnlabError:
        raise
    except Exception as exc:  # PIL raises many types on bad files (OSError, SyntaxError, ...)
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RnnlabError(f"{name} is not a readable image ({reason})") from None
    if array.shape != (size, size, 3):
        raise RnnlabError(f"{name}: decoded to shape {array.shape}, not ({size}, {size}, 3)")
    return array


def save_dataset(
    images: np.ndarray, captions: Sequence[Sequence[str]], out_dir: Path | str
) -> Path:
    """Write ``out_dir/NNNNN.png`` and ``out_dir/captions.tsv`` (``file<TAB>caption``).

    Raises:
        RnnlabError: if ``out_dir`` is a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RnnlabError(f"{out} is a file, not a folder: choose another folder to write")
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, caption) in enumerate(zip(images, captions)):
        name = f"{i:05d}.png"
        save_image(image, out / name)
        lines.append(f"{name}\t{' '.join(caption)}\n")
    (out / "captions.tsv").write_text("".join(lines), encoding="utf-8")
    return out


def load_dataset(folder: Path | str, size: int = IMAGE_SIZE) -> tuple[np.ndarray, list[list[str]]]:
    """Read a folder written by :func:`save_dataset` (``captions.tsv`` and its images).

    Raises:
        RnnlabError: no ``captions.tsv``, a malformed line (with its number), an image name
            outside the folder (absolute, or through ``..``), or a missing or unreadable image.
    """
    folder = Path(folder)
    index = folder / "captions.tsv"
    if not folder.is_dir():
        raise RnnlabError(f"{shown(folder)} is not a folder (expected captions.tsv and images)")
    if not index.exists():
        raise RnnlabError(f"{shown(folder)} has no captions.tsv (expected file<TAB>caption lines)")
    root = folder.resolve()
    images, captions = [], []
    for lineno, line in enumerate(split_lines(read_text(index, "captions file")), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise RnnlabError(
                f"{shown(index)}:{lineno}: expected file<TAB>caption, got {line[:60]!r}"
            )
        image = _inside(root, fields[0], f"{shown(index)}:{lineno}")
        try:
            images.append(load_image(image, size))
        except RnnlabError as exc:
            raise RnnlabError(f"{shown(index)}:{lineno}: {exc}") from None
        captions.append(fields[1].split())
    if not images:
        raise RnnlabError(f"{shown(index)} lists no images")
    return np.stack(images), captions


def _inside(root: Path, name: str, where: str) -> Path:
    """``root / name``, which must lie inside ``root`` (after resolving ``..`` and links)."""
    try:
        path = (root / name).resolve()
        inside = not Path(name).is_absolute() and path.is_relative_to(root) and path != root
    except (OSError, ValueError, RuntimeError):  # a NUL character, a symlink loop
        inside = False
    if not inside:
        raise RnnlabError(
            f"{where}: image {name[:60]!r} is not a file inside the dataset folder "
            "(names must be relative, without ..)"
        )
    return path


__all__ = [
    "COLOURS",
    "HELD_OUT",
    "IMAGE_FORMATS",
    "IMAGE_SIZE",
    "KINDS",
    "SPLITS",
    "Scene",
    "Shape",
    "generate",
    "load_dataset",
    "load_image",
    "random_scene",
    "render",
    "save_dataset",
    "save_image",
]

"""Fixtures of the viz tests: tiny trained runs and real servers on them (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.tasks.runner import load_run
from rnnlab.viz.page import write_static
from rnnlab.viz.server import Background, create_app

TEXT = (
    'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n"Speak, speak."\n\n'
    "First Citizen:\nYou are all resolved (rather) to die than to famish?\n\n"
) * 12
TINY = ["--hidden", "32", "--layers", "2", "--embedding", "8", "--seq-len", "20", "--batch", "4"]
COMMON = ["--no-progress", "--max-steps", "30", "--eval-every", "10", "--log-every", "5"]


def serve_in_thread(run_dir: Path, **kwargs) -> Iterator[str]:
    """A real server on ``run_dir`` (any free port on 127.0.0.1); yields its base URL."""
    server = Background(create_app(load_run(run_dir), **kwargs))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viz-lm")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT * 3)  # its validation part (10%) holds about 550 characters
    out = root / "tiny-lm"
    argv = ["train", "lm", "--data", str(corpus), *TINY, *COMMON, "--sample", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def lm_server(lm_run: Path) -> Iterator[str]:
    yield from serve_in_thread(lm_run, length=300)


@pytest.fixture(scope="session")
def static_page(lm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = create_app(load_run(lm_run), length=200)
    return write_static(app.state.viz, tmp_path_factory.mktemp("viz-static") / "page.html")


@pytest.fixture(scope="session")
def seq2seq_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("viz-s2s") / "tiny-seq2seq"
    argv = ["train", "seq2seq", "--synthetic", "reverse", "--hidden", "16", "--attention"]
    assert main([*argv, *COMMON, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def seq2seq_server(seq2seq_run: Path) -> Iterator[str]:
    yield from serve_in_thread(seq2seq_run)


@pytest.fixture(scope="session")
def classify_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("viz-classify") / "tiny-classify"
    argv = ["train", "classify", "--hidden", "8", "--max-steps", "5", "--eval-every", "5"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def classify_server(classify_run: Path) -> Iterator[str]:
    yield from serve_in_thread(classify_run)

"""Every bad input of the catalogue (tests/bad_inputs.py), run through ``rnnlab.cli.main``: each
exits with its code (2: the user's error) and exactly one line on stderr, ``rnnlab...: error:
...``, holding the expected words, never a traceback; and the table of docs/RELIABILITY.md is
exactly what these runs print (``RNNLAB_WRITE_TABLE=1 pytest tests/test_bad_inputs.py`` rewrites
it).

The cases run once per module, in this process, as on a machine without a GPU
(``torch.cuda.is_available`` is False for them); a case that needs a run of the current format
copies one tiny language-model run (trained for one step), the others copy the small 0.1.0
checkpoints of tests/fixtures/v0_1_0.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from tests.bad_inputs import (
    CASES,
    DOC,
    FIXTURES,
    Case,
    Result,
    doc_table,
    render_table,
    replace_table,
    run_case,
    shown_message,
)

#: every command of ``rnnlab``, each of which the catalogue must try
COMMANDS = (
    "train lm", "train classify", "train tag", "train seq2seq", "train names", "train caption",
    "sample", "eval", "predict", "tag", "translate", "generate-names", "caption",
    "data punct-tags", "data captions", "bench", "experiment", "diagnose", "viz", "export",
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A language-model run of the current format: a 1x8 LSTM, one step on the small text."""
    out = tmp_path_factory.mktemp("trained") / "run"
    argv = [
        "train", "lm", "--data", str(FIXTURES / "small.txt"), "--hidden", "8", "--layers", "1",
        "--batch", "4", "--seq-len", "10", "--max-steps", "1", "--sample", "0",
        "--backend", "torch", "--out", str(out),
    ]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    assert code == 0, err.getvalue()[-2000:]
    return out


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory, trained: Path
) -> dict[str, tuple[Case, Result, Path]]:
    root = tmp_path_factory.mktemp("bad")
    done = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: False)  # the same table on any machine
        mp.setattr(torch.cuda, "device_count", lambda: 0)
        mp.chdir(root)  # a default output folder (runs/...) lands here, never in the repository
        for case in CASES:
            folder = root / case.name
            done[case.name] = (case, run_case(case, folder, trained), folder)
    return done


def test_the_catalogue_is_large_distinct_and_covers_every_command() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "case names must be distinct"
    plain = [
        (c.argv, repr(c.files)) for c in CASES if all(isinstance(v, str) for v in c.files.values())
    ]
    assert len(plain) == len(set(plain)), "two cases run the same command on the same files"
    assert len(CASES) >= 60
    covered = {c.command for c in CASES}
    assert set(COMMANDS) <= covered, sorted(set(COMMANDS) - covered)
    kinds = {c.kind for c in CASES}
    assert {"file", "number", "option", "checkpoint", "data", "type", "name"} <= kinds


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_bad_input_is_one_line_error(
    name: str, results: dict[str, tuple[Case, Result, Path]]
) -> None:
    case, result, _ = results[name]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.code == case.code, (result.code, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines[:10]
    assert lines[0].startswith("rnnlab") and ": error: " in lines[0], lines[0]
    assert case.expect in lines[0], lines[0]


def test_table_in_reliability_doc_matches_the_runs(
    results: dict[str, tuple[Case, Result, Path]],
) -> None:
    rows = [
        (case, result.code, shown_message(result.stderr, folder))
        for case, result, folder in results.values()
    ]
    table = render_table(rows)
    doc = DOC.read_text(encoding="utf-8")
    if os.environ.get("RNNLAB_WRITE_TABLE") == "1":
        DOC.write_text(replace_table(doc, table), encoding="utf-8")
        doc = DOC.read_text(encoding="utf-8")
    assert doc_table(doc) == table, (
        "docs/RELIABILITY.md's bad-input table differs from the code's messages: rerun with "
        "RNNLAB_WRITE_TABLE=1 pytest tests/test_bad_inputs.py"
    )
    assert f"{len(rows)} bad inputs" in doc


def test_size_limit_is_checked_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit applies to the exact count of the whole model, built on the meta device: a
    model just above a lowered limit is refused, one at it is built."""
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.errors import RnnlabError
    from rnnlab.tasks.runner import check_model_size

    # the lower bound of the config check never exceeds the real count
    for cell in ("lstm", "gru", "elman", "minimal-gru", "mut1", "peephole"):
        for layers, both in ((1, False), (3, True)):
            config = RecurrentConfig(
                cell=cell, hidden_size=6, num_layers=layers, bidirectional=both
            )
            real = sum(p.numel() for p in config.build(5).parameters())
            assert config.min_parameters(5) <= real, (cell, layers, both)
    layer = RecurrentConfig(cell="gru", hidden_size=8).build(4)
    n = sum(p.numel() for p in layer.parameters())  # 3*8*(4+8) + 2*3*8 = 336
    monkeypatch.setenv("RNNLAB_MAX_PARAMETERS", str(n))
    check_model_size(layer, "it")
    monkeypatch.setenv("RNNLAB_MAX_PARAMETERS", str(n - 1))
    with pytest.raises(RnnlabError, match=f"it has {n:,} parameters"):
        check_model_size(layer, "it")
    with pytest.raises(RnnlabError, match="more than the limit of 335"):
        RecurrentConfig(cell="gru", hidden_size=20)  # at least 400: the config is refused

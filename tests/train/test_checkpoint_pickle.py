"""No code runs on load: a pickle where a checkpoint file is expected is refused in one line,
and its payload (creating a marker directory) never runs, from the library or the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import load_checkpoint

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v0_1_0" / "lm"
FILES = ("model.safetensors", "training.safetensors", "meta.json", "training.json")


class Payload:
    """Unpickling this calls ``os.makedirs(marker)``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.makedirs, (self.marker,))


def _pickles(marker: Path) -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"state_dict": Payload(marker)}, buffer)
    return {
        "pickle": pickle.dumps(Payload(marker)),
        "pickle_protocol_2": pickle.dumps(Payload(marker), protocol=2),
        "torch_save": buffer.getvalue(),
    }


def _hostile_run(tmp_path: Path, name: str, kind: str, fix_checksum: bool) -> tuple[Path, Path]:
    """A copy of a real LM run whose ``best/`` and ``last/`` hold a pickle as file ``name``
    (with meta.json's checksum made to match it when ``fix_checksum``)."""
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    payload = _pickles(marker)[kind]
    # the payload really runs when unpickled (so that the tests below can fail)
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").is_dir()
    for ck in (run / "best", run / "last"):
        (ck / name).write_bytes(payload)
        if fix_checksum and name != "meta.json":
            doc = json.loads((ck / "meta.json").read_text())
            doc["checkpoint"]["sha256"][name] = hashlib.sha256(payload).hexdigest()
            (ck / "meta.json").write_text(json.dumps(doc))
    return run, marker


CASES = [
    (name, kind, fix)
    for name in FILES
    for kind in ("pickle", "pickle_protocol_2", "torch_save")
    for fix in ((False, True) if name != "meta.json" else (False,))
]


@pytest.mark.parametrize("name, kind, fix", CASES)
def test_library_refuses_a_pickle(tmp_path: Path, name: str, kind: str, fix: bool) -> None:
    run, marker = _hostile_run(tmp_path, name, kind, fix)
    for prefer in ("best", "last"):
        with pytest.raises(RnnlabError) as exc:
            load_checkpoint(run, prefer=prefer)
        text = str(exc.value)
        assert "\n" not in text and name in text and "is a pickle" in text, text
    assert not marker.exists()


@pytest.mark.parametrize("name, kind, fix", [c for c in CASES if c[1] != "pickle_protocol_2"])
def test_cli_refuses_a_pickle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, kind: str, fix: bool
) -> None:
    run, marker = _hostile_run(tmp_path, name, kind, fix)
    assert main(["sample", str(run), "--length", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and err.count("\n") == 1, err
    assert name in err and "is a pickle" in err
    assert not marker.exists()


def test_cli_samples_the_untouched_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(FIXTURE, tmp_path / "run")  # the oracle: the refusals above are the pickle's
    assert main(["sample", str(tmp_path / "run"), "--length", "5"]) == 0
    assert capsys.readouterr().out

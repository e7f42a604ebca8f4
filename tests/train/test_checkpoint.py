"""Checkpoints: exact round trips without pickle, clear errors, and atomic replacement."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.out = nn.Linear(4, 5)
        self.out.weight = self.emb.weight


def _trained() -> tuple[Tied, torch.optim.Optimizer]:
    model = Tied()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randint(0, 5, (2, 3))
    out = model.out(model.lstm(model.emb(x))[0])
    out.sum().backward()
    opt.step()
    return model, opt


def test_round_trip_weights_optimizer_and_state(tmp_path: Path) -> None:
    model, opt = _trained()
    state = {
        "step": 7,
        "by_int": {3: torch.arange(3), 1: [1.5, None]},
        "rng": torch.get_rng_state(),
    }
    save_checkpoint(tmp_path / "ck", model, {"task": "x", "vocab": ["a", "b"]}, state, opt)
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.meta == {"task": "x", "vocab": ["a", "b"]}
    assert ck.rnnlab_version == rnnlab.__version__
    for name, t in model.state_dict().items():
        assert torch.equal(ck.state_dict[name], t), name
    assert torch.equal(ck.state_dict["out.weight"], ck.state_dict["emb.weight"])
    ts = ck.training_state
    assert ts["step"] == 7 and torch.equal(ts["by_int"][3], torch.arange(3))
    assert ts["by_int"][1] == [1.5, None]
    assert torch.equal(ts["rng"], state["rng"])
    # the optimizer continues identically
    model2 = Tied()
    model2.load_state_dict(ck.state_dict)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(ts["optimizer"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m.out(m.emb(torch.tensor([[1, 2]]))).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt = _trained()
    save_checkpoint(tmp_path / "ck", model, {"task": "x"}, {"step": 1}, opt)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_checkpoint(tmp_path / "ck")


def test_version_of_an_rnnlab_0_1_0_checkpoint() -> None:
    ck = load_checkpoint(Path(__file__).parent.parent / "fixtures" / "v0_1_0" / "lm")
    assert ck.rnnlab_version == "0.1.0" and ck.meta["task"] == "lm"


def test_run_directory_resolves_best_then_last(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path / "run" / "last", model, {"which": "last"})
    assert load_checkpoint(tmp_path / "run").meta == {"which": "last"}
    save_checkpoint(tmp_path / "run" / "best", model, {"which": "best"})
    assert load_checkpoint(tmp_path / "run").meta == {"which": "best"}
    assert load_checkpoint(tmp_path / "run", prefer="last").meta == {"which": "last"}


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "no checkpoint"),
        ("empty_dir", "holds no checkpoint"),
        ("truncate_model", "checksum"),
        ("flip_model_byte", "checksum"),
        ("corrupt_meta", "corrupted"),
        ("delete_model", "missing"),
        ("future_version", "newer than this rnnlab"),
        ("truncate_training", "checksum"),
    ],
)
def test_bad_checkpoints_give_clear_errors(tmp_path: Path, damage: str, message: str) -> None:
    model, opt = _trained()
    ck = tmp_path / "ck"
    save_checkpoint(ck, model, {"task": "x"}, {"step": 1}, opt)
    if damage == "missing":
        ck = tmp_path / "nope"
    elif damage == "empty_dir":
        ck = tmp_path / "empty"
        ck.mkdir()
    elif damage == "truncate_model":
        data = (ck / "model.safetensors").read_bytes()
        (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "flip_model_byte":
        data = bytearray((ck / "model.safetensors").read_bytes())
        data[-3] ^= 0xFF
        (ck / "model.safetensors").write_bytes(bytes(data))
    elif damage == "corrupt_meta":
        (ck / "meta.json").write_text('{"checkpoint": {"format_ver')
    elif damage == "delete_model":
        (ck / "model.safetensors").unlink()
    elif damage == "future_version":
        doc = json.loads((ck / "meta.json").read_text())
        doc["checkpoint"]["format_version"] = 99
        (ck / "meta.json").write_text(json.dumps(doc))
    elif damage == "truncate_training":
        (ck / "training.safetensors").write_bytes(b"\x08\x00")
    with pytest.raises(RnnlabError, match=message):
        load_checkpoint(ck)


def test_saving_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path / "ck", model, {"v": 1})
    save_checkpoint(tmp_path / "ck", model, {"v": 2})
    assert load_checkpoint(tmp_path / "ck").meta == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_killed_between_the_two_renames_of_rnnlab_0_2_loads_previous(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path / "ck", model, {"v": 1})
    # the state rnnlab <= 0.2 left if killed right after moving the previous checkpoint aside
    os.replace(tmp_path / "ck", tmp_path / ".ck.old")
    assert resolve_checkpoint(tmp_path / "ck") == tmp_path / ".ck.old"
    assert load_checkpoint(tmp_path / "ck").meta == {"v": 1}
    save_checkpoint(tmp_path / "ck", model, {"v": 2})  # and the next save recovers
    assert load_checkpoint(tmp_path / "ck").meta == {"v": 2}
    assert not (tmp_path / ".ck.old").exists()


def test_process_killed_during_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    """A child saves checkpoint 1, then is killed while writing checkpoint 2's weights."""
    child = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        import torch
        from torch import nn
        import rnnlab.train.checkpoint as C

        path = Path({str(tmp_path / "ck")!r})
        model = nn.Linear(64, 64)
        C.save_checkpoint(path, model, {{"v": 1}}, {{"step": 1}})
        def slow(p, data):
            # write half the file where the new checkpoint is being assembled, then hang
            with open(p, "wb") as f:
                f.write(data[: len(data) // 2])
            Path({str(tmp_path / "ready")!r}).write_text("x")
            time.sleep(60)

        C._write_file = slow
        with torch.no_grad():
            model.weight.add_(1.0)
        C.save_checkpoint(path, model, {{"v": 2}}, {{"step": 2}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, "child exited early"
            assert time.time() < deadline, "child never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.meta == {"v": 1} and ck.training_state == {"step": 1}
    # a later save cleans up the half-written temporary directory
    save_checkpoint(tmp_path / "ck", nn.Linear(64, 64), {"v": 3})
    assert load_checkpoint(tmp_path / "ck").meta == {"v": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "ready"]

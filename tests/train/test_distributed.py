"""Training on torch.distributed: sharding, and real 2-process gloo runs launched by torchrun.

The 2-process runs are compared with 1-process runs of the same global batch and seed. The
tolerance is relative 2e-5 on every logged loss: the two runs compute the same sums, but DDP
adds the two ranks' gradients in another order than one process's backward, and float32
addition is not associative; after ten Adam steps the difference is at most 2e-7 (measured),
far below any real divergence (a wrong shard or a missing average shows at the first step, by
1e-2 or more).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.batching import Batches
from rnnlab.errors import RnnlabError
from rnnlab.tasks.lm.data import StreamBatches
from rnnlab.train import distributed
from rnnlab.train.checkpoint import load_checkpoint

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 12
LM = [
    "--hidden", "24", "--layers", "1", "--embedding", "8", "--seq-len", "16", "--batch", "6",
    "--dropout", "0", "--log-every", "1", "--eval-every", "5", "--no-progress", "--sample", "0",
    "--warmup", "0", "--lr", "0.01", "--schedule", "constant",
]  # fmt: skip
RTOL = 2e-5


# -- sharding (one process) ------------------------------------------------------------------
@pytest.mark.parametrize("n_items,batch,world", [(10, 4, 2), (11, 5, 3), (9, 3, 2), (12, 4, 4)])
def test_shards_of_each_batch_make_the_global_batch(n_items: int, batch: int, world: int) -> None:
    whole = Batches(list(range(n_items)), batch, lambda xs: (torch.tensor(xs),), seed=7)
    shards = [whole.shard(r, world) for r in range(world)]
    for epoch in (0, 1):
        per_rank = [[b[0].tolist() for b in s(epoch)] for s in shards]
        assert len({len(p) for p in per_rank}) == 1  # every rank takes as many steps
        assert all(len(p) == len(s) for p, s in zip(per_rank, shards, strict=True))
        expected = [b[0].tolist() for b in whole(epoch) if len(b[0]) >= world]
        together = [[x for p in per_rank for x in p[i]] for i in range(len(expected))]
        assert together == expected
        sizes = [len(p[0]) for p in per_rank]
        assert max(sizes) - min(sizes) <= 1


def test_a_batch_smaller_than_the_world_is_refused() -> None:
    with pytest.raises(RnnlabError, match="smaller than the 3 processes"):
        Batches(list(range(10)), 2, lambda xs: (xs,)).shard(0, 3)
    with pytest.raises(RnnlabError, match="smaller than the 4 processes"):
        StreamBatches(torch.arange(100), 3, 5).shard(0, 4)


def test_stream_shards_are_the_ranks_rows_of_every_window() -> None:
    whole = StreamBatches(torch.arange(203), 6, 7, shift=True)
    for epoch in (0, 3):
        batches = list(whole(epoch))
        parts = [list(whole.shard(r, 2)(epoch)) for r in range(2)]
        assert len(parts[0]) == len(parts[1]) == len(batches)
        for i, (x, y, first) in enumerate(batches):
            assert torch.equal(torch.cat([parts[0][i][0], parts[1][i][0]]), x)
            assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), y)
            assert parts[0][i][2] == parts[1][i][2] == first


def test_generic_sharding_slices_every_tensor() -> None:
    class Plain:
        def __len__(self) -> int:
            return 2

        def __call__(self, epoch: int):
            yield torch.arange(5), {"y": torch.arange(5) * 2}, "tag"
            yield torch.arange(1), {"y": torch.arange(1)}, "skipped: fewer rows than ranks"

    rank_1 = distributed.Group(1, 2, 1, torch.device("cpu"))
    got = list(distributed.shard_batches(Plain(), rank_1)(0))
    assert len(got) == 1
    x, d, tag = got[0]
    assert x.tolist() == [2, 3, 4] and d["y"].tolist() == [4, 6, 8] and tag == "tag"


def test_without_a_launch_everything_is_one_process() -> None:
    assert not distributed.launched() and distributed.init("cpu") is None
    with distributed.evaluation():
        assert distributed.sharding() == (0, 1)
        assert distributed.shard([1, 2, 3]) == [1, 2, 3]
        assert distributed.reduce_sums([1.5, 2]) == [1.5, 2]
        assert distributed.gather_list([4]) == [4]
    assert distributed.on_main(lambda: 5) == 5


# -- real runs under torchrun ------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    env["RNNLAB_DIST_TIMEOUT"] = "60"
    return env


def torchrun(argv: list[str], nproc: int = 2, **kwargs) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=N -m rnnlab ARGV`` (not waited for)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "rnnlab", *argv,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def finished(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _losses(run: Path, name: str, column: str) -> list[tuple[int, float]]:
    with open(run / name, newline="") as f:
        return [(int(r["step"]), float(r[column])) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same LM run on 1 process (in this one) and on 2 (under torchrun), 10 steps, and a
    2-process run of 5 steps resumed to 10."""
    root = tmp_path_factory.mktemp("dist")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    base = ["train", "lm", "--data", str(corpus), *LM]
    runs = {name: root / name for name in ("one", "two", "resumed")}
    two = torchrun([*base, "--max-steps", "10", "--out", str(runs["two"])])
    assert main([*base, "--max-steps", "10", "--out", str(runs["one"])]) == 0
    code, _, err = finished(two)
    assert code == 0, err[-3000:]
    runs["two_stderr"] = err  # type: ignore[assignment]
    code, _, err = finished(torchrun([*base, "--max-steps", "5", "--out", str(runs["resumed"])]))
    assert code == 0, err[-3000:]
    resume = [*base, "--max-steps", "10", "--out", str(runs["resumed"]), "--resume"]
    code, _, err = finished(torchrun(resume))
    assert code == 0, err[-3000:]
    return runs


def test_two_processes_follow_the_one_process_loss_curve(lm_runs: dict[str, Path]) -> None:
    for name, column in (("metrics.csv", "train_loss"), ("eval.csv", "val_loss")):
        one = _losses(lm_runs["one"], name, column)
        two = _losses(lm_runs["two"], name, column)
        assert [s for s, _ in one] == [s for s, _ in two] and len(one) >= 2
        for (_, a), (_, b) in zip(one, two, strict=True):
            assert b == pytest.approx(a, rel=RTOL), (name, one, two)
    assert _losses(lm_runs["one"], "metrics.csv", "train_loss")[0][1] != pytest.approx(
        _losses(lm_runs["one"], "metrics.csv", "train_loss")[-1][1], rel=1e-2
    )  # it trained: the curve is not flat, so equal curves say something
    # the tokens per step are the global batch's on both
    one = load_checkpoint(lm_runs["one"], prefer="last")
    two = load_checkpoint(lm_runs["two"], prefer="last")
    for key, value in one.state_dict.items():
        torch.testing.assert_close(two.state_dict[key], value, rtol=1e-4, atol=1e-5)


def test_only_rank_0_writes_and_says_so_once(lm_runs: dict[str, Path]) -> None:
    err = lm_runs["two_stderr"]
    assert err.count("training a ") == 1 and "on 2 processes (gloo)" in err
    run = lm_runs["two"]
    assert sorted(p.name for p in run.parent.iterdir() if p.name.startswith("two")) == ["two"]
    state = load_checkpoint(run, prefer="last").training_state
    assert state["world_size"] == 2 and len(state["ranks"]) == 1
    assert set(state["ranks"][0]) == {"rng", "loss_fn"}


def test_the_checkpoint_loads_in_one_process_and_samples(
    lm_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sample", str(lm_runs["two"]), "--length", "40", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0 and len(out) >= 40


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(lm_runs: dict[str, Path]) -> None:
    a = load_checkpoint(lm_runs["two"], prefer="last")
    b = load_checkpoint(lm_runs["resumed"], prefer="last")
    assert a.training_state["step"] == b.training_state["step"] == 10
    for key, value in a.state_dict.items():
        assert torch.equal(b.state_dict[key], value), key
    assert _losses(lm_runs["two"], "eval.csv", "val_loss") == _losses(
        lm_runs["resumed"], "eval.csv", "val_loss"
    )


def test_resuming_on_another_number_of_processes_is_one_line(
    lm_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = lm_runs["two"].parent / "corpus.txt"
    argv = ["train", "lm", "--data", str(corpus), *LM, "--max-steps", "12"]
    code = main([*argv, "--out", str(lm_runs["two"]), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "trained on 2" in err and "--nproc_per_node=2" in err
    assert len(err.strip().splitlines()) == 1


def test_a_tagger_on_two_processes_weighs_each_rank_by_its_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sentences of different lengths: the ranks' parts hold different numbers of tokens, and
    the loss of the global batch is still the one of one process (the weighting by tokens)."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    lines = []
    for i in range(40):
        n = 2 + (i * 7) % 9
        sentence = [words[(i + j) % len(words)] for j in range(n)]
        lines += [f"{w}\t{'N' if w in ('cat', 'dog', 'mat') else 'O'}" for w in sentence] + [""]
    data = tmp_path / "tags.conll"
    data.write_text("\n".join(lines))
    argv = [
        "train", "tag", "--data", str(data), "--hidden", "16", "--batch", "8", "--max-steps",
        "6", "--eval-every", "3", "--log-every", "1", "--no-progress", "--dropout", "0",
    ]  # fmt: skip
    two = torchrun([*argv, "--out", str(tmp_path / "two")])
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    code, _, err = finished(two)
    assert code == 0, err[-3000:]
    for name, column in (("metrics.csv", "train_loss"), ("eval.csv", "val_loss")):
        one = _losses(tmp_path / "one", name, column)
        two_ = _losses(tmp_path / "two", name, column)
        assert len(one) == len(two_) >= 2
        for (_, a), (_, b) in zip(one, two_, strict=True):
            assert b == pytest.approx(a, rel=RTOL), (name, one, two_)


def _rank_pid(parent: int, rank: int, deadline: float) -> int:
    """The pid of the torchrun worker of ``rank`` (a child of ``parent``)."""
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if ppid == parent and f"RANK={rank}".encode() in environ:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_rank_stops_the_others_quickly_with_a_clear_message(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 4)
    out = tmp_path / "run"
    process = torchrun(
        ["train", "lm", "--data", str(corpus), *LM, "--max-steps", "100000", "--out", str(out)]
    )
    deadline = time.monotonic() + 120
    while not (out / "last").exists():  # training, with a checkpoint written
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.2)
    os.kill(_rank_pid(process.pid, 1, deadline), signal.SIGKILL)
    killed = time.monotonic()
    code, _, err = finished(process, timeout=90)
    assert time.monotonic() - killed < 60
    assert code != 0
    assert "rnnlab: error: process 0" in err, err[-3000:]
    message = next(line for line in err.splitlines() if "rnnlab: error: process 0" in line)
    assert "the last checkpoint is kept" in message
    load_checkpoint(out, prefer="last")  # intact

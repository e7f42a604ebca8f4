"""CPU threads from the cores other processes leave free (rnnlab.machine), against a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnlab import machine
from rnnlab.machine import ThreadPolicy, choose_threads, free_cores


class FakeProc:
    """A /proc with two CPUs whose counters the test advances."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "self").mkdir(parents=True)
        self.busy = [0, 0]  # per CPU, jiffies
        self.idle = [100, 100]  # since boot
        self.own = 0
        self.write()

    def write(self) -> None:
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        for i in range(2):
            lines.append(f"cpu{i} {self.busy[i]} 0 0 {self.idle[i]} 0 0 0 0 0 0")
        (self.root / "stat").write_text("\n".join(lines) + "\n")
        fields = ["S"] + ["0"] * 10 + [str(self.own), "0"] + ["0"] * 20
        (self.root / "self" / "stat").write_text("1234 (py thon) " + " ".join(fields) + "\n")

    def advance(self, jiffies: int, others: float, own: float) -> None:
        """``jiffies`` pass on each CPU; others keep ``others`` cores busy, this process
        ``own`` cores."""
        busy = others + own
        for i in range(2):
            share = min(1.0, max(0.0, busy - i))
            self.busy[i] += round(jiffies * share)
            self.idle[i] += jiffies - round(jiffies * share)
        self.own += round(jiffies * own)
        self.write()


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeProc:
    fake = FakeProc(tmp_path / "proc")
    monkeypatch.setattr(machine, "_PROC", fake.root)
    monkeypatch.setattr(machine, "_cpus", lambda: [0, 1])
    monkeypatch.delenv("RNNLAB_THREADS", raising=False)
    return fake


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "load,cores,free",
    [(0.0, 2, 2), (0.2, 2, 2), (0.3, 2, 1), (1.0, 2, 1), (3.0, 2, 1), (1.1, 8, 7), (1.3, 8, 6)],
)
def test_free_cores(load: float, cores: int, free: int) -> None:
    assert free_cores(load, cores) == free


def test_the_policy_follows_the_other_processes(proc: FakeProc, threads: None) -> None:
    torch.set_num_threads(2)
    policy = ThreadPolicy(interval=0.0)
    proc.advance(1000, others=0.0, own=2.0)  # quiet: this process alone on both cores
    assert policy.others() == pytest.approx(0.0, abs=1e-9)
    proc.advance(1000, others=1.0, own=1.0)  # a competitor takes a core
    assert policy.update() == 1 and torch.get_num_threads() == 1
    proc.advance(1000, others=0.05, own=1.0)  # it is gone
    assert policy.update() == 2 and torch.get_num_threads() == 2
    assert policy.changes == 2


def test_the_policy_never_goes_above_its_ceiling(proc: FakeProc, threads: None) -> None:
    torch.set_num_threads(1)  # e.g. OMP_NUM_THREADS=1, or torchrun's default per process
    policy = ThreadPolicy(interval=0.0)
    proc.advance(1000, others=0.0, own=1.0)
    assert policy.update() == 1 and policy.changes == 0


def test_the_policy_measures_only_every_interval(proc: FakeProc, threads: None) -> None:
    torch.set_num_threads(2)
    policy = ThreadPolicy(interval=3600.0)
    proc.advance(1000, others=2.0, own=0.0)
    assert policy.update() == 2  # too early to measure: unchanged


def test_threads_given_are_kept_and_no_policy_runs(proc: FakeProc, threads: None) -> None:
    assert choose_threads(3) is None and torch.get_num_threads() == 3


def test_rnnlab_threads_torch_turns_the_policy_off(
    proc: FakeProc, threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RNNLAB_THREADS", "torch")
    torch.set_num_threads(2)
    assert choose_threads(None) is None and torch.get_num_threads() == 2


def test_a_command_starts_with_the_cores_the_load_average_leaves(
    proc: FakeProc, threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(2)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    policy = choose_threads(None)
    assert isinstance(policy, ThreadPolicy) and torch.get_num_threads() == 1
    assert policy.ceiling == 2  # it may go back up to torch's own count
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    torch.set_num_threads(2)
    choose_threads(None)
    assert torch.get_num_threads() == 2


def test_without_proc_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: None
) -> None:
    monkeypatch.setattr(machine, "_PROC", tmp_path / "nothing")
    torch.set_num_threads(2)
    assert choose_threads(None) is None and torch.get_num_threads() == 2


def test_the_trainer_updates_the_policy_after_every_step() -> None:
    from rnnlab.train.config import TrainConfig
    from rnnlab.train.trainer import Trainer

    class Counting:
        calls = 0

        def update(self) -> int:
            self.calls += 1
            return 1

    model = torch.nn.Linear(2, 1)

    def loss_fn(m: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        return m(batch).pow(2).mean(), len(batch)

    policy = Counting()
    config = TrainConfig(max_steps=5, progress=False, eval_every=100)
    Trainer(model, config, loss_fn=loss_fn, threads=policy).fit(  # type: ignore[arg-type]
        lambda epoch: [torch.randn(4, 2) for _ in range(3)]
    )
    assert policy.calls == 5

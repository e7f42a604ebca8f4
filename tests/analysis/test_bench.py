"""``rnnlab bench`` on a tiny grid: it runs through the real CLI and writes the JSON it promises
(speed itself is not asserted: this is a benchmark, not a timed test)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnlab.analysis import bench, benchmodels
from rnnlab.cli import main
from rnnlab.core import fast
from rnnlab.errors import RnnlabError

RESULT_KEYS = {
    "model",
    "path",
    "batch",
    "time",
    "hidden",
    "fwd_tokens_per_s",
    "fwdbwd_tokens_per_s",
    "fwd_ratio",
    "fwdbwd_ratio",
    "fwdbwd_gflops",
    "peak_share",
    "peak_mem_bytes",
    "mem_ratio",
}


def test_cli_smoke_writes_json(tmp_path: Path) -> None:
    """A separate process, as a user runs it (the memory pass changes malloc settings)."""
    out = tmp_path / "bench.json"
    models = "torch.nn.GRU,rnnlab.nn.GRU,peephole,gru-before+ln,naive-lstm"
    cmd = [sys.executable, "-m", "rnnlab", "bench", "--grid", "2,3,8", "--grid", "1,2,4",
           "--repeats", "2", "--threads", "1", "--models", models, "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "(batch, time, hidden) = (2, 3, 8)" in proc.stdout
    assert "naive-lstm" in proc.stdout
    result = json.loads(out.read_text())
    assert result["threads"] == 1
    assert result["baseline"] == "torch.nn.LSTM"
    assert result["gemm_peak_gflops"] > 0
    rows = result["results"]
    assert {r["model"] for r in rows} == {"torch.nn.LSTM", *models.split(",")}
    assert len(rows) == 2 * 6
    for r in rows:
        assert set(r) >= RESULT_KEYS
        assert r["fwd_tokens_per_s"] > 0 and r["fwdbwd_tokens_per_s"] > 0
        assert len(r["fwd_times_s"]) == 2
    base = [r for r in rows if r["model"] == "torch.nn.LSTM"]
    assert all(math.isclose(r["fwdbwd_ratio"], 1.0) for r in base)
    paths = {r["model"]: r["path"] for r in rows}
    assert paths["torch.nn.GRU"] == "torch" and paths["naive-lstm"] == "python-loop"
    if result["fast_path"]:
        assert paths["peephole"] == "fast" and paths["gru-before+ln"] == "fast"
    if sys.platform == "linux":
        assert all(isinstance(r["peak_mem_bytes"], int) for r in rows)


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--models", "nope", "--grid", "1,2,3", "--no-memory"]) == 2
    err = capsys.readouterr().err
    assert "unknown model(s) nope" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--grid", "1,2"])
    assert exc.value.code == 2
    assert "BATCH,TIME,HIDDEN" in capsys.readouterr().err


def test_no_fast_measures_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "before.json"
    args = ["bench", "--grid", "1,2,4", "--repeats", "1", "--warmup", "0", "--no-memory"]
    args += ["--models", "peephole,rnnlab.nn.GRU", "--no-fast", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    paths = {r["model"]: r["path"] for r in result["results"]}
    assert paths == {"torch.nn.LSTM": "torch", "peephole": "reference", "rnnlab.nn.GRU": "torch"}
    assert result["fast_path"] is False and result["results"][0]["peak_mem_bytes"] is None


def test_loop_models_time_a_variants_reference_loop(tmp_path: Path) -> None:
    """``loop:VARIANT`` is the same cell on the readable reference loop: the same function as
    the variant (same seed, same weights), run without the fast path; its peak memory is
    measured in a fresh process like any model."""
    out = tmp_path / "loops.json"
    args = ["bench", "--grid", "2,3,8", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    args += ["--models", "peephole+ln,loop:peephole+ln", "--json", str(out)]
    assert main(args) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["loop:peephole+ln"]["path"] == "reference"
    if fast.is_available():
        assert rows["peephole+ln"]["path"] == "fast"
    if sys.platform == "linux":
        assert isinstance(rows["loop:peephole+ln"]["peak_mem_bytes"], int)
    factories = benchmodels.resolve_models(("peephole+ln", "loop:peephole+ln"))
    torch.manual_seed(0)
    model = factories["peephole+ln"](8)
    torch.manual_seed(0)
    loop = factories["loop:peephole+ln"](8)
    x = torch.randn(3, 2, 8)
    torch.testing.assert_close(loop(x)[0], model(x)[0])
    assert bench.execution_path(loop, x) == "reference"
    relu = benchmodels.resolve_models(("loop:elman-relu",))["loop:elman-relu"](8)
    assert relu.inner.backend_for(x) == "reference"  # not torch's fused ReLU RNN either
    for bad in ("loop:torch.nn.GRU", "loop:", "loop:nope"):
        with pytest.raises(RnnlabError, match="unknown model"):
            benchmodels.resolve_models((bad,))


def test_list_names_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    names = capsys.readouterr().out.split()
    for name in ("torch.nn.LSTM", "rnnlab.nn.GRU", "peephole", "lstm+ln", "naive-lstm"):
        assert name in names


def test_naive_lstm_is_an_lstm() -> None:
    """The naive baseline computes torch.nn.LSTM's function (so its speed is comparable)."""
    naive = bench.NaiveLSTM(3, 5)
    ref = torch.nn.LSTM(3, 5)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, f"{name}_l0").copy_(getattr(naive, name))
    x = torch.randn(7, 2, 3)
    out, (h, c) = naive(x)
    out_ref, (h_ref, c_ref) = ref(x)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h, h_ref[0])
    torch.testing.assert_close(c, c_ref[0])
    assert bench.gemm_flops_per_token(naive) == bench.gemm_flops_per_token(ref) == 2 * 20 * 8


def test_peak_memory_of_a_model_is_measured_alone_and_reproducibly() -> None:
    """Each model's peak memory comes from a fresh process: the same figure every time, and
    it grows with the sequence length (the saved activations)."""

    def peak(T: int) -> int:
        cmd = [
            sys.executable,
            "-m",
            "rnnlab.analysis.bench",
            "--peak-memory",
            "lstm+ln",
            "8",
            str(T),
        ]
        done = subprocess.run([*cmd, "64", "1", "0", "1"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip().splitlines()[-1])

    short, again, long = peak(300), peak(300), peak(1200)
    assert abs(short - again) <= 0.03 * short  # ~11 MiB, reproducible to ~1%
    assert 3 * short < long < 5 * short

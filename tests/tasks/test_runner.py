"""The generic runner's machine options: --device and --threads."""

from __future__ import annotations

import argparse

import pytest
import torch

from rnnlab.config import resolve
from rnnlab.errors import RnnlabError
from rnnlab.flags import add_arguments, given
from rnnlab.tasks.runner import RunConfig, resolve_device


def _run_config(argv: list[str]) -> RunConfig:
    parser = argparse.ArgumentParser(prog="t")
    add_arguments(parser, RunConfig)
    return resolve(RunConfig, explicit=[given(parser.parse_args(argv), RunConfig)])


def test_threads_option_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        run = _run_config(["--threads", "1", "--device", "cpu"])
        assert resolve_device(run.device, run.threads) == torch.device("cpu")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        run = _run_config(["--device", "cpu"])  # no --threads: torch's own setting
        assert run.threads is None
        resolve_device(run.device, run.threads)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_resolve_device_names() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(RnnlabError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(RnnlabError, match="CUDA is not available"):
            resolve_device("cuda")

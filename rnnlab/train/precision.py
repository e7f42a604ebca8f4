"""``--precision``: the context the forward passes of training, validation and the "use"
commands run in (docs/SCALING.md has what runs in which precision)."""

from __future__ import annotations

import contextlib

import torch

from rnnlab.errors import RnnlabError


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context the forward passes run in for ``precision`` (``fp32``: none; ``bf16``:
    :func:`torch.autocast` with bfloat16 on ``device``).

    Raises:
        RnnlabError: an unknown precision, or bf16 on a device that cannot run it.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise RnnlabError(f"unknown precision {precision!r}: expected fp32 or bf16")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RnnlabError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16")
    if device.type not in ("cpu", "cuda"):
        raise RnnlabError(f"--precision bf16 is not supported on {device.type}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


__all__ = ["autocast"]

"""The argument checks of :class:`rnnlab.core.layers.Recurrent`: input, lengths and state.

One-line errors with torch.nn's error types (:class:`~rnnlab.errors.ShapeError` is a
RuntimeError, :class:`~rnnlab.errors.WrongTypeError` a TypeError) and, where code and PyTorch's
own tests match on it, torch.nn's wording.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnlab.core.state import State, state_parts
from rnnlab.errors import RnnlabError, ShapeError, WrongTypeError


class LayerChecks:
    """The checks, as methods of the layer (they read its sizes and cells)."""

    batch_first: bool
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int
    num_directions: int
    state_is_tuple: bool
    cells: torch.nn.ModuleList

    def _check_input(self, x: Tensor) -> None:
        if not torch.is_floating_point(x):
            raise RnnlabError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        weight_dtype = self.cells[0].weight_ih.dtype
        if x.dtype != weight_dtype and not torch.is_autocast_enabled(x.device.type):
            # torch.nn's wording: code (and PyTorch's own tests) match it
            raise RnnlabError(
                f"RNN input dtype {x.dtype} does not match weight dtype {weight_dtype}. Convert "
                f"input: input.to({weight_dtype}), or convert model: model.to({x.dtype})"
            )
        if x.dim() not in (2, 3):
            raise RnnlabError(
                f"input must be 3-D ({'N, T, D' if self.batch_first else 'T, N, D'}) or 2-D "
                f"(T, D), got {x.dim()}-D with shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"input size mismatch: expected last dimension {self.input_size}, "
                f"got {x.shape[-1]} (input shape {tuple(x.shape)})"
            )

    def _check_lengths(self, lengths: Tensor | Sequence[int], N: int, T: int) -> Tensor:
        # torch.export and torch.compile: no device copy, no branch on the lengths' values
        traced = torch.compiler.is_compiling()
        lengths = torch.as_tensor(lengths) if traced else torch.as_tensor(lengths).cpu()
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise RnnlabError(f"lengths must be integers, got dtype {lengths.dtype}")
        if lengths.shape != (N,):
            raise ShapeError(
                f"lengths must have shape ({N},) (one per sequence), got {tuple(lengths.shape)}"
            )
        if traced and not torch.compiler.is_exporting():
            # compiled: the same check, run by the graph (an error when the step runs)
            torch._assert_async(
                ((lengths >= 1) & (lengths <= T)).all(),
                "lengths must be in [1, T] (T: the time dimension)",  # (no f-string: T symbolic)
            )
        elif not traced and N and (lengths.min() < 1 or lengths.max() > T):
            raise ShapeError(  # a RuntimeError, as from torch's pack_padded_sequence
                f"lengths must be in [1, {T}] (the time dimension), got min "
                f"{int(lengths.min())} and max {int(lengths.max())}"
            )
        return lengths.long()

    def _check_state(self, state: State, N: int | None, x: Tensor) -> None:
        """``N`` None: unbatched input, whose state is (L*K, H) (h (L*K, P) with projections)."""
        LK = self.num_layers * self.num_directions
        dims = "layers*directions, hidden" if N is None else "layers*directions, batch, hidden"
        parts = state_parts(state)
        if self.state_is_tuple != isinstance(state, tuple) or (
            self.state_is_tuple and len(state) != 2
        ):
            kind = "a pair (h, c)" if self.state_is_tuple else "a single tensor"
            raise ShapeError(f"state must be {kind} for this cell, got {type(state).__name__}")
        # h is (.., P) with projections, c always (.., H)
        for p, size in zip(parts, (self.output_size, self.hidden_size)):
            expected = (LK, size) if N is None else (LK, N, size)
            if not isinstance(p, Tensor):
                raise WrongTypeError(f"state must hold tensors, got {type(p).__name__}")
            if tuple(p.shape) != expected:
                raise ShapeError(
                    f"state shape mismatch: expected {expected} ({dims}), got {tuple(p.shape)}"
                )
            if p.dtype != x.dtype:
                raise RnnlabError(f"state dtype {p.dtype} does not match input dtype {x.dtype}")


__all__ = ["LayerChecks"]

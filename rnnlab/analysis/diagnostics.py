"""Diagnostics for any rnnlab model: gradient flow, step-Jacobian spectra, gate statistics.

Everything here works on a model that contains :class:`~rnnlab.core.layers.Recurrent` layers (or is
one): :func:`record` runs the model once with every cell's steps recorded (the projected
inputs, the state entering each step, the gates) and, for :func:`gradient_flow`, with a zero
perturbation added to the state after every step, whose gradient is ``dL/ds_k``. It records
through step hooks (:meth:`Recurrent.register_step_hook`), so while recording each
``Recurrent`` runs its readable reference loop (:func:`rnnlab.core.layers.scan`), not torch's
kernels nor :mod:`rnnlab.core.fast`, which compute the same.

Results are plain data (numpy arrays in small frozen dataclasses); ``plot_*`` write PNGs.

* :func:`gradient_flow`: ``||dL/ds_k||`` for every step k, as a curve over the lag ``t - k``
  from the step t whose loss is differentiated; :meth:`GradientFlow.decay_lag` is the lag at
  which the norm has fallen (or grown) by a factor 1e3 (Bengio et al. 1994; Pascanu et al. 2013).
* :func:`jacobian_spectrum`: singular values of every step Jacobian ``ds_t/ds_{t-1}`` along a
  trajectory and of their running product ``ds_t/ds_0``: contraction (< 1) or expansion (> 1).
* :func:`gate_statistics` and :func:`gate_traces`: mean and saturation of every gate of every
  layer over a batch, and the activations over a sequence for heatmaps.

The state ``s_k`` is the cell's full state: ``h_k`` for every cell but the LSTM, ``(h_k, c_k)``
for the LSTM (its Jacobians are 2H x 2H; its gradient norm covers both parts).

Example::

    >>> rnn = Recurrent(LSTMCell, 1, 32)
    >>> x = torch.randn(16, 100, 1)
    >>> flows = gradient_flow(rnn, lambda: rnn(x)[0][:, -1].pow(2).mean())
    >>> flows["layer0"].decay_lag()   # None: the LSTM's gradient has not fallen by 1e3
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.analysis.plots import finish_axes, pyplot, save_figure
from rnnlab.core.cells import RecurrentCell
from rnnlab.core.layers import Recurrent, StepHook
from rnnlab.core.state import (
    State,
    detach_state,
    flatten_state,
    hidden_part,
    map_state,
    state_parts,
    unflatten_state,
)

#: A gate value below LOW or above HIGH counts as saturated (tanh gates: |value| above HIGH).
LOW, HIGH = 0.1, 0.9


# -- recording ----------------------------------------------------------------------------
@dataclass
class CellTrace:
    """What one cell saw and did, step by step, during a recorded run.

    Attributes:
        name: ``"layer{l}"`` (``".reverse"`` for the backward direction), prefixed with the
            module path when the model has several ``Recurrent`` layers.
        cell: the cell.
        inputs: per step, the projected input ``xp_t`` (N, G*H), detached.
        states: per step, the state entering the step, detached.
        gates: per step, the gate activations by name (N, H), detached (if recorded).
        perturbations: per step, the zero tensors added to the new state (if recorded).
    """

    name: str
    cell: RecurrentCell
    inputs: list[Tensor] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    gates: list[dict[str, Tensor]] = field(default_factory=list)
    perturbations: list[tuple[Tensor, ...]] = field(default_factory=list)


def _recording_hook(
    traces: dict[tuple[int, int], CellTrace], gates: bool, perturb: bool
) -> StepHook:
    """A step hook filling the trace of each (layer, direction)."""

    def hook(
        layer: int,
        direction: int,
        t: int,
        xp: Tensor,
        state: State,
        h: Tensor,
        new_state: State,
        gate_values: dict[str, Tensor],
    ) -> tuple[Tensor, State] | None:
        trace = traces[(layer, direction)]
        trace.inputs.append(xp.detach())
        trace.states.append(detach_state(state))
        if gates:
            trace.gates.append({k: v.detach() for k, v in gate_values.items()})
        if not perturb:
            return None
        eps = map_state(lambda p: torch.zeros_like(p, requires_grad=True), new_state)
        moved = map_state(torch.add, new_state, eps)
        trace.perturbations.append(state_parts(eps))
        # the output is the state's h: move it too
        h = hidden_part(moved) if h is hidden_part(new_state) else h
        return h, moved

    return hook


@contextmanager
def record(
    model: nn.Module, gates: bool = False, perturb: bool = False
) -> Iterator[list[CellTrace]]:
    """Record every cell step of every :class:`Recurrent` in ``model`` while in the block.

    Args:
        model: a model containing (or being) one or more ``Recurrent`` layers.
        gates: also record the gate activations of every step.
        perturb: add a zero tensor (requiring grad) to the state after every step, so that
            ``torch.autograd.grad(loss, eps)`` gives ``dL/ds_k``.

    Yields:
        The traces, one per cell (layer and direction), filled as the model runs.
    """
    rnns = [(name, m) for name, m in model.named_modules() if isinstance(m, Recurrent)]
    if not rnns:
        raise ValueError(
            f"the model ({type(model).__name__}) contains no rnnlab.core.layers.Recurrent to record"
        )
    traces: list[CellTrace] = []
    handles = []
    try:
        for module_name, rnn in rnns:
            prefix = f"{module_name}." if module_name and len(rnns) > 1 else ""
            by_cell: dict[tuple[int, int], CellTrace] = {}
            for layer in range(rnn.num_layers):
                for d in range(rnn.num_directions):
                    name = f"{prefix}layer{layer}" + (".reverse" if d else "")
                    by_cell[(layer, d)] = CellTrace(name, rnn.cell_at(layer, d))
                    traces.append(by_cell[(layer, d)])
            handles.append(rnn.register_step_hook(_recording_hook(by_cell, gates, perturb)))
        yield traces
    finally:
        for handle in handles:
            handle.remove()


# -- gradient flow ------------------------------------------------------------------------
@dataclass(frozen=True)
class GradientFlow:
    """``||dL/ds_k||`` for every step k of one cell, L being the loss at step ``loss_step``.

    Attributes:
        norms: (T,) the Frobenius norm over the batch of the gradient w.r.t. the state after
            step k (k = 0 .. T-1); zero after ``loss_step``.
        loss_step: the step whose loss was differentiated (0-based).
    """

    norms: np.ndarray
    loss_step: int

    @property
    def lags(self) -> np.ndarray:
        """(loss_step + 1,) the lags 0, 1, ..., loss_step."""
        return np.arange(self.loss_step + 1)

    @property
    def by_lag(self) -> np.ndarray:
        """(loss_step + 1,) the norms ordered by lag; ``by_lag[j] = ||dL/ds_{t-j}||``."""
        return self.norms[: self.loss_step + 1][::-1].copy()

    def at_lag(self, lag: int) -> float:
        return float(self.by_lag[lag])

    def decay_lag(self, factor: float = 1e3) -> int | None:
        """The first lag at which the norm has fallen or grown by ``factor`` from lag 0, or None."""
        curve = self.by_lag
        ratio = curve / max(curve[0], np.finfo(np.float64).tiny)
        hits = np.nonzero((ratio <= 1.0 / factor) | (ratio >= factor))[0]
        return int(hits[0]) if hits.size else None


def gradient_flow(
    model: nn.Module, loss_fn: Callable[[], Tensor], loss_step: int = -1
) -> dict[str, GradientFlow]:
    """The gradient of a loss w.r.t. the state after every step, for every cell of ``model``.

    Args:
        model: a model containing ``Recurrent`` layers.
        loss_fn: runs ``model`` once and returns the scalar loss, e.g. the loss of the last step
            only: ``lambda: loss(head(rnn(x)[0][:, -1]), y)``.
        loss_step: the step whose loss ``loss_fn`` computes (negative: from the end); sets the
            origin of the lags.

    Returns:
        ``{trace name: GradientFlow}``, e.g. ``{"layer0": ...}``.
    """
    with record(model, perturb=True) as traces:
        loss = loss_fn()
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    eps = [e for trace in traces for step in trace.perturbations for e in step]
    grads = iter(torch.autograd.grad(loss, eps, allow_unused=True))
    flows = {}
    for trace in traces:
        T = len(trace.perturbations)
        norms = np.zeros(T)
        for k, step in enumerate(trace.perturbations):
            sq = 0.0
            for _ in step:
                g = next(grads)
                sq += 0.0 if g is None else float(g.double().pow(2).sum())
            norms[k] = sq**0.5
        t = loss_step + T if loss_step < 0 else loss_step
        if not 0 <= t < T:
            raise ValueError(f"loss_step must be in [-{T}, {T - 1}] (T = {T}), got {loss_step}")
        flows[trace.name] = GradientFlow(norms, t)
    return flows


# -- Jacobians ----------------------------------------------------------------------------
@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values (descending) of the step Jacobians and of their running product.

    Attributes:
        step: (T, S) singular values of ``J_t = ds_t/ds_{t-1}`` (S = H, or 2H for the LSTM).
        product: (T, S) singular values of ``J_t J_{t-1} ... J_1 = ds_t/ds_0``.
    """

    step: np.ndarray
    product: np.ndarray


def step_jacobians(cell: RecurrentCell, inputs: list[Tensor], states: list[State]) -> Tensor:
    """``ds_t/ds_{t-1}`` at every step of one sequence: (T, S, S), float64.

    Args:
        cell: the cell.
        inputs: per step, the projected input (1, G*H) (``cell.input_projection(x_t)``).
        states: per step, the state entering it ((1, H) or a pair).
    """
    jacobians = []
    for xp, state in zip(inputs, states):

        def f(s: Tensor, xp: Tensor = xp, like: State = state) -> Tensor:
            return flatten_state(cell._gates(xp, unflatten_state(s, like))[1])[0]

        s0 = flatten_state(state).detach()
        jac = torch.autograd.functional.jacobian(f, s0, vectorize=True)  # (S, 1, S)
        jacobians.append(jac[:, 0].double())
    return torch.stack(jacobians)


def spectrum(jacobians: Tensor) -> JacobianSpectrum:
    """Singular values of each Jacobian (T, S, S) and of the running products (float64)."""
    jacobians = jacobians.double()
    products = []
    running = torch.eye(jacobians.shape[-1], dtype=torch.float64)
    for jac in jacobians:
        running = jac @ running
        products.append(running)
    step = torch.linalg.svdvals(jacobians)
    product = torch.linalg.svdvals(torch.stack(products))
    return JacobianSpectrum(step.numpy(), product.numpy())


def jacobian_spectrum(
    model: nn.Module, run: Callable[[], object], example: int = 0
) -> dict[str, JacobianSpectrum]:
    """Step-Jacobian spectra of every cell along the trajectory ``run()`` drives, for one example.

    Args:
        model: a model containing ``Recurrent`` layers.
        run: runs ``model`` once (its result is ignored), e.g. ``lambda: model(x)``.
        example: which sequence of the batch to follow.
    """
    with torch.no_grad(), record(model) as traces:
        run()
    out = {}
    for trace in traces:
        inputs = [xp[example : example + 1] for xp in trace.inputs]
        states = [map_state(lambda p: p[example : example + 1], s) for s in trace.states]
        with torch.enable_grad():
            out[trace.name] = spectrum(step_jacobians(trace.cell, inputs, states))
    return out


# -- gates --------------------------------------------------------------------------------
def gate_traces(model: nn.Module, run: Callable[[], object]) -> dict[str, dict[str, Tensor]]:
    """Every gate of every cell over a run: ``{trace: {gate: (N, T, H)}}`` (no grad)."""
    with torch.no_grad(), record(model, gates=True) as traces:
        run()
    out: dict[str, dict[str, Tensor]] = {}
    for trace in traces:
        if trace.gates and trace.gates[0]:
            out[trace.name] = {
                g: torch.stack([step[g] for step in trace.gates], dim=1) for g in trace.gates[0]
            }
    return out


def gate_statistics(
    model: nn.Module, run: Callable[[], object], lengths: Tensor | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and saturation of every gate of every cell over a batch.

    A sigmoid gate is saturated below ``LOW`` (0.1) or above ``HIGH`` (0.9); a tanh gate (one
    that takes negative values, e.g. the LSTM's ``g``) when ``|value| > HIGH``.

    Args:
        model, run: as :func:`jacobian_spectrum`.
        lengths: (N,) valid lengths of a padded batch; steps past them are left out.

    Returns:
        ``{trace: {gate: {"mean", "saturated", "low", "high"}}}`` (fractions of all values).
    """
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for name, gates in gate_traces(model, run).items():
        stats[name] = {}
        for g, values in gates.items():  # (N, T, H)
            if lengths is not None:
                T = values.shape[1]
                steps = torch.arange(T, device=values.device).unsqueeze(0)  # (1, T)
                valid = steps < torch.as_tensor(lengths, device=values.device).unsqueeze(1)
                values = values[valid]  # (valid steps, H)
            v = values.double()
            if bool((v < 0).any()):
                low, high = (v < -HIGH).double().mean(), (v > HIGH).double().mean()
            else:
                low, high = (v < LOW).double().mean(), (v > HIGH).double().mean()
            stats[name][g] = {
                "mean": float(v.mean()),
                "saturated": float(low + high),
                "low": float(low),
                "high": float(high),
            }
    return stats


# -- plots --------------------------------------------------------------------------------
def plot_gradient_flow(
    flows: Mapping[str, GradientFlow],
    path: Path | str,
    title: str = "gradient flow",
    styles: Mapping[str, dict] | None = None,
) -> Path:
    """``||dL/ds_{t-lag}||`` against the lag, one line per entry, log scale, as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, flow in flows.items():
        curve = np.maximum(flow.by_lag, 1e-300)
        ax.semilogy(flow.lags, curve, label=label, **(styles or {}).get(label, {}))
    finish_axes((ax,), "lag t - k (steps back from the loss)")
    ax.set_ylabel("||dL_t / ds_k||")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_jacobian_spectrum(
    spectra: Mapping[str, JacobianSpectrum], path: Path | str, title: str = "step Jacobians"
) -> Path:
    """Left: largest and smallest singular value of each step; right: of the running product."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, spec in spectra.items():
        t = np.arange(1, len(spec.step) + 1)
        (line,) = left.plot(t, spec.step[:, 0], label=f"{label} max")
        left.plot(t, spec.step[:, -1], ls="--", color=line.get_color(), label=f"{label} min")
        right.semilogy(
            t, np.maximum(spec.product[:, 0], 1e-300), color=line.get_color(), label=f"{label} max"
        )
        right.semilogy(
            t,
            np.maximum(spec.product[:, -1], 1e-300),
            ls="--",
            color=line.get_color(),
            label=f"{label} min",
        )
    left.set_title("singular values of ds_t/ds_{t-1}")
    right.set_title("singular values of ds_t/ds_0")
    finish_axes((left, right), "step t", legend_size=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_gate_heatmaps(
    gates: Mapping[str, Tensor], path: Path | str, example: int = 0, title: str = "gates"
) -> Path:
    """One heatmap (units x steps) per gate of one example: ``gates`` as one entry of
    :func:`gate_traces` (``{gate: (N, T, H)}``)."""
    plt = pyplot()
    n = len(gates)
    if n == 0:
        raise ValueError("no gates to plot (this cell has none)")
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n + 0.6), squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], gates.items()):
        v = values[example].detach().cpu().numpy().T  # (H, T)
        tanh_gate = bool((v < 0).any())
        im = ax.imshow(
            v,
            aspect="auto",
            interpolation="nearest",
            cmap="RdBu_r" if tanh_gate else "viridis",
            vmin=-1 if tanh_gate else 0,
            vmax=1,
        )
        ax.set_ylabel(f"{name}\nunit")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title)
    return save_figure(fig, path)


__all__ = [
    "CellTrace",
    "GradientFlow",
    "JacobianSpectrum",
    "gate_statistics",
    "gate_traces",
    "gradient_flow",
    "jacobian_spectrum",
    "plot_gate_heatmaps",
    "plot_gradient_flow",
    "plot_jacobian_spectrum",
    "record",
    "spectrum",
    "step_jacobians",
]

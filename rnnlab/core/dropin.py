"""Drop-in replacements for ``torch.nn.RNN``, ``torch.nn.GRU`` and ``torch.nn.LSTM``.

Same constructor arguments, defaults and argument errors, forward signature, return shapes and
dtypes (also under CPU autocast), state_dict keys and layouts, and parameters as torch.nn: a
torch.nn state_dict loads into them and theirs into torch.nn. In the standard configuration
they compute what torch's fused kernels compute. They also take the rnnlab cell options as
keyword arguments (``LSTM(..., peephole=True, layer_norm=True)``); with any non-standard option
they run rnnlab's own implementation, and the extra parameters get torch-style names
(``weight_ci_l0``, ``ln_ih_weight_l0_reverse``, ...), after torch's four of each layer and
direction.

``backend`` (keyword-only) chooses the implementation as for
:class:`~rnnlab.core.layers.Recurrent`.

Design: the drop-in registers every parameter itself, under torch's name and in torch's order
(per layer, per direction: ``w_ih, w_hh, b_ih, b_hh``, then the variant's extras), so
``named_parameters()``, ``_parameters``, ``state_dict()``, ``torch.nn.utils.weight_norm``,
``spectral_norm``, ``prune``, ``parametrizations.*``, ``torch.func.functional_call`` with
torch's names, ``module.weight_hh_l0 = Parameter(...)`` and ``.to()`` all act on the module
exactly as on ``torch.nn.LSTM``. Its cells (which hold the math) are kept out of the module
tree, as a plain attribute, and share the same Parameter objects; before each run the drop-in
puts into the cells whatever tensor each torch name holds now, when it is not already there
(weight_norm's and a parametrization's computed weight, functional_call's substitute, a
parameter replaced by ``.to()`` or ``load_state_dict(assign=True)``). In the common case that
is one identity check per parameter, and nothing is written.

Why not subclass ``torch.nn.LSTM``/``GRU``/``RNN``: Dynamo refuses to trace instances of those
classes (``torch/_dynamo/variables/builder.py``: a graph break unless the experimental
``torch._dynamo.config.allow_rnn``), and rnnlab layers must compile with ``fullgraph=True``.
Nor ``torch.nn.RNNBase``: its constructor creates and names torch's four parameters per layer
itself (no room for a variant's extras), accepts only its own four modes, and its
``_flat_weights`` bookkeeping would be a second copy of the parameter table kept here. The
attributes code written against torch.nn reads (``mode``, ``proj_size``, ``_flat_weights``,
``_flat_weights_names``, ``_all_weights``, ``all_weights``, ``check_forward_args``, ...) are
provided with torch's behaviour instead; ``isinstance(m, torch.nn.LSTM)`` is False.

Example::

    >>> lstm = rnnlab.nn.LSTM(10, 20, num_layers=2)
    >>> lstm.load_state_dict(torch.nn.LSTM(10, 20, num_layers=2).state_dict())
    >>> out, (h, c) = lstm(torch.randn(5, 3, 10))   # (T, N, D): batch_first=False as in torch
    >>> [name for name, _ in lstm.named_parameters()][:2]
    ['weight_ih_l0', 'weight_hh_l0']
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnlab.core.cells import CellFactory, ElmanCell, GRUCell, LSTMCell, State
from rnnlab.core.layers import Recurrent
from rnnlab.core.state import map_state, state_parts
from rnnlab.errors import RnnlabError, ShapeError, WrongTypeError

#: torch's parameters of one layer and direction, in its order; a cell's others come after
#: them in the cell's own order (``weight_hr``, a projection, would map to ``weight_hr_l0``).
_TORCH_FIRST = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _check_torch_options(
    input_size: object,
    hidden_size: object,
    num_layers: object,
    bias: object,
    batch_first: object,
    dropout: object,
    bidirectional: object,
    proj_size: object,
) -> None:
    """``torch.nn.RNNBase``'s argument checks, in its order, with its error types and wording
    (code and PyTorch's own tests match them), each followed by the value given."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
        raise RnnlabError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            f"element being zeroed, got {dropout!r}"
        )
    for name, flag in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(flag, bool):
            raise WrongTypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
    for name, size in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(size, int) or isinstance(size, bool):
            raise WrongTypeError(f"{name} should be of type int, got: {type(size).__name__}")
        if size <= 0:
            raise RnnlabError(f"{name} must be greater than zero, got {size}")
    if not isinstance(num_layers, int) or isinstance(num_layers, bool):
        raise WrongTypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}")
    if num_layers <= 0:
        raise RnnlabError(f"num_layers must be greater than zero, got {num_layers}")
    if not isinstance(proj_size, int) or isinstance(proj_size, bool):
        raise WrongTypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
    if proj_size < 0:
        raise RnnlabError(
            "proj_size should be a positive integer or zero to disable projections, "
            f"got {proj_size}"
        )
    if proj_size >= hidden_size:
        raise RnnlabError(
            f"proj_size has to be smaller than hidden_size, got {proj_size} >= {hidden_size}"
        )
    if not isinstance(bidirectional, bool):  # torch.nn does not check it; "False" acts as True
        raise WrongTypeError(
            f"bidirectional should be of type bool, got: {type(bidirectional).__name__}"
        )


def _no_projection(proj_size: int | None) -> None:
    """torch.nn.RNN and GRU refuse ``proj_size`` (even 0) with this ValueError."""
    if proj_size is not None:
        raise RnnlabError("proj_size argument is only supported for LSTM, not RNN or GRU")


class _TorchCompatible(Recurrent):
    """Recurrent with torch.nn's arguments, defaults, errors, parameter names and attributes."""

    #: Under autocast the drop-in itself runs the recurrence in its weights' dtype and returns
    #: the dtype torch.nn's module returns (:meth:`_forward_autocast`), not Recurrent.
    recur_in_weight_dtype = False

    #: torch's kernel family: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU" (as torch.nn's ``mode``).
    mode: str
    #: LSTM projection size; 0 (no projection), as torch.nn's for RNN and GRU.
    proj_size: int

    def __init__(
        self,
        mode: str,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        proj_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        backend: str,
        options: dict[str, object],
    ) -> None:
        _check_torch_options(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size,
        )  # fmt: skip
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        super().__init__(
            partial(cell, bias=bias),
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=0.0,  # checked above as torch checks it: [0, 1] (Recurrent takes [0, 1))
            batch_first=batch_first,
            device=device,
            dtype=dtype,
            backend=backend,
        )
        self.dropout = float(dropout)
        self.mode = mode
        self.bias = bias
        self.proj_size = proj_size
        self._options = options  # the rnnlab options given, for repr
        self._adopt_cells()

    # -- parameters under torch's names ---------------------------------------------------
    def _adopt_cells(self) -> None:
        """Register every cell parameter under its torch name, and take the cells out of the
        module tree (a plain attribute: ``Recurrent``'s code still reads ``self.cells``)."""
        cells = self._modules.pop("cells")
        object.__setattr__(self, "cells", cells)
        slots: dict[str, tuple[nn.Module, str]] = {}  # torch name -> (owner, its name there)
        all_weights: list[list[str]] = []
        renamed: dict[str, str] = {}
        for k, cell in enumerate(cells):
            layer, direction = divmod(k, self.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            own = dict(cell.named_parameters())
            first = [n for n in _TORCH_FIRST if n in own]
            order = first + [n for n in own if n not in _TORCH_FIRST]
            names = []
            for inner in order:
                name = inner.replace(".", "_") + suffix
                self.register_parameter(name, own[inner])
                owner, _, leaf = inner.rpartition(".")
                slots[name] = (cell.get_submodule(owner), leaf)
                names.append(name)
            all_weights.append(names)
            # names of earlier versions (GRU reset="before"'s ln_hn), mapped by the cell
            for old, new in getattr(cell, "renamed_keys", dict)().items():
                renamed[old.replace(".", "_") + suffix] = new.replace(".", "_") + suffix
        self._cell_slots = slots
        self._all_weights = all_weights
        self._flat_weights_names = [name for names in all_weights for name in names]
        if renamed:
            self._renamed_keys = renamed
            # with_module: torch holds the module weakly (no reference cycle, freed on del)
            self._register_load_state_dict_pre_hook(_load_renamed_keys, with_module=True)

    def _bind_cells(self) -> None:
        """Put each torch name's current tensor into its cell's slot, where it is not already.

        The tensor is the registered parameter, or, where none is registered under the name
        (weight_norm, spectral_norm, prune, parametrizations), the attribute that replaced it.
        """
        params = self._parameters
        # the owner's dict is read at every call: torch.export replaces modules' dicts
        for name, (owner, leaf) in self._cell_slots.items():
            current = params.get(name)
            if current is None:
                current = getattr(self, name, None)
            if owner._parameters[leaf] is not current:
                owner._parameters[leaf] = current

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        slot = self.__dict__.get("_cell_slots", {}).get(name)
        if slot is not None:  # ``lstm.weight_hh_l0 = Parameter(...)``: the cell sees it now
            owner, leaf = slot
            owner._parameters[leaf] = getattr(self, name, None)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> _TorchCompatible:
        # .to() / .double() may replace a parameter by a new one (a device change, or
        # torch.__future__'s overwrite): the cells must compute with the new one
        result = super()._apply(fn, recurse)
        self._bind_cells()
        return result

    def reset_parameters(self) -> None:
        """torch.nn's initialisation (each cell's; LayerNorm gains 1, ``forget_bias`` if set)."""
        self._bind_cells()
        super().reset_parameters()

    @property
    def _flat_weights(self) -> list[Tensor | None]:  # type: ignore[override]
        """The current tensor of every name in ``_flat_weights_names`` (as torch.nn's)."""
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Parameters per layer and direction, in torch's order (as ``torch.nn.LSTM``)."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn (weights are never flattened here; torch's
        is a no-op too except for cuDNN)."""

    # -- torch.nn's checks, for code that calls them ---------------------------------------
    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        """Raise as ``torch.nn.RNNBase.check_input``: a dtype unlike the weights' (outside
        autocast), a dimension count other than 3 (2 for packed data), or a wrong feature size."""
        weight_dtype = self.weight_ih_l0.dtype
        if input.dtype != weight_dtype and not torch.is_autocast_enabled(input.device.type):
            raise RnnlabError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight_dtype}). "
                f"Convert input: input.to({weight_dtype}), or convert model: "
                f"model.to({input.dtype})"
            )
        expected = 2 if batch_sizes is not None else 3
        if input.dim() != expected:
            raise ShapeError(f"input must have {expected} dimensions, got {input.dim()}")
        if input.size(-1) != self.input_size:
            raise ShapeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )

    def get_expected_hidden_size(
        self, input: Tensor, batch_sizes: Tensor | None
    ) -> tuple[int, int, int]:
        """(L*K, N, H) for ``input`` (N from ``batch_sizes[0]`` for packed data)."""
        if batch_sizes is not None:
            batch = int(batch_sizes[0])
        else:
            batch = input.size(0) if self.batch_first else input.size(1)
        hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (self.num_layers * self.num_directions, batch, hidden)

    def check_hidden_size(
        self,
        hx: Tensor,
        expected_hidden_size: tuple[int, int, int],
        msg: str = "Expected hidden size {}, got {}",
    ) -> None:
        """Raise a ``RuntimeError`` (:class:`~rnnlab.errors.ShapeError`) if ``hx`` is not of
        ``expected_hidden_size``."""
        if hx.size() != expected_hidden_size:
            raise ShapeError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: State, batch_sizes: Tensor | None) -> None:
        """:meth:`check_input` and the state's shape, as torch.nn's."""
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def permute_hidden(self, hx: State, permutation: Tensor | None) -> State:
        """The state with its batch entries reordered by ``permutation`` (None: unchanged)."""
        if permutation is None:
            return hx
        return map_state(lambda s: s.index_select(1, permutation), hx)

    # -- running ----------------------------------------------------------------------------
    def forward(
        self, input: Tensor | PackedSequence, hx: State | None = None
    ) -> tuple[Tensor | PackedSequence, State]:
        self._bind_cells()
        data = input.data if isinstance(input, PackedSequence) else input
        if (
            isinstance(data, Tensor)
            and data.device.type == "cpu"
            and data.is_floating_point()
            and torch.is_autocast_enabled("cpu")
        ):
            return self._forward_autocast(input, hx)
        return super().forward(input, hx)

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        self._bind_cells()
        if not torch.is_autocast_enabled(x.device.type):
            return super().step(x, state)
        # under autocast, as every rnnlab layer: in the weights' dtype (torch.nn has no step)
        dtype = next(self.parameters()).dtype
        if state is not None:
            state = map_state(lambda s: s.to(dtype), state)
        with torch.autocast(x.device.type, enabled=False):
            return super().step(x.to(dtype), state)

    def _forward_autocast(
        self, input: Tensor | PackedSequence, hx: State | None
    ) -> tuple[Tensor | PackedSequence, State]:
        """Under CPU autocast: the recurrence in the weights' dtype with autocast off inside (as
        every rnnlab layer runs it: rnnlab's C++ loop takes one dtype), the input and state cast
        to it; the output and state come back in the dtype ``torch.nn``'s module returns
        (:func:`_torch_autocast_dtype`), its values to that dtype's precision."""
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        parts = [] if hx is None else [p for p in state_parts(hx) if isinstance(p, Tensor)]
        batch_sizes = input.batch_sizes if packed else None
        result = _torch_autocast_dtype(self.mode, data, parts, batch_sizes)
        dtype = next(self.parameters()).dtype
        input = input.to(dtype=dtype) if packed else input.to(dtype)
        if hx is not None:
            hx = map_state(lambda s: s.to(dtype) if isinstance(s, Tensor) else s, hx)
        with torch.autocast("cpu", enabled=False):
            out, final = super().forward(input, hx)
        out = out._replace(data=out.data.to(result)) if packed else out.to(result)
        return out, map_state(lambda s: s.to(result), final)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        s += "".join(f", {k}={v!r}" for k, v in self._options.items())
        return s + (f", backend={self.backend!r}" if self.backend != "auto" else "")


def _torch_autocast_dtype(
    mode: str, data: Tensor, state: list[Tensor], batch_sizes: Tensor | None
) -> torch.dtype:
    """The dtype ``torch.nn``'s module of ``mode`` returns under CPU autocast (torch 2.13).

    RNN: autocast's (every step is an autocast linear). LSTM through oneDNN (torch's choice,
    with oneDNN enabled, for float32 input, or bfloat16 where the CPU supports it, unpacked or
    packed without padding): autocast's (its layer op is on autocast's list). Otherwise (GRU,
    a padded packed LSTM, LSTM without oneDNN): the state's dtype, the input's if no state is
    given. ``batch_sizes``: a PackedSequence's, None for a tensor input.
    """
    autocast = torch.get_autocast_dtype("cpu")
    if mode in ("RNN_TANH", "RNN_RELU"):
        return autocast
    padded = batch_sizes is not None and bool((batch_sizes != batch_sizes[0]).any())
    if mode == "LSTM" and not padded and data.numel() and torch.backends.mkldnn.enabled:
        onednn = data.dtype == torch.float32 or (
            data.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
        if onednn and torch.backends.mkldnn.is_available():
            return autocast
    return state[0].dtype if state else data.dtype


def _load_renamed_keys(
    module: _TorchCompatible, state_dict: dict, prefix: str, *args: object, **kwargs: object
) -> None:
    """Load checkpoints that name a parameter as an earlier version did (``ln_hn_weight_l0``)."""
    for old, new in module._renamed_keys.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class RNN(_TorchCompatible):
    r"""Drop-in ``torch.nn.RNN`` (Elman cells), plus ``layer_norm``.

    .. math:: h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    Args as ``torch.nn.RNN`` (``proj_size`` given at all is a ValueError, as there);
    ``layer_norm`` as :class:`rnnlab.ElmanCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        layer_norm: bool = False,
        backend: str = "auto",
        proj_size: int | None = None,
    ) -> None:
        _no_projection(proj_size)
        if nonlinearity not in ("tanh", "relu"):
            raise RnnlabError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        self.nonlinearity = nonlinearity
        cell = partial(ElmanCell, nonlinearity=nonlinearity, layer_norm=layer_norm)
        options = {"nonlinearity": nonlinearity} if nonlinearity != "tanh" else {}
        options.update({"layer_norm": True} if layer_norm else {})
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", cell, input_size,
            hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device,
            dtype, backend, options,
        )  # fmt: skip


class GRU(_TorchCompatible):
    r"""Drop-in ``torch.nn.GRU``, plus ``reset="before"`` (Cho et al. 2014) and ``layer_norm``.

    Args as ``torch.nn.GRU`` (``proj_size`` given at all is a ValueError, as there); ``reset``
    and ``layer_norm`` as :class:`rnnlab.GRUCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        reset: str = "after",
        layer_norm: bool = False,
        backend: str = "auto",
        proj_size: int | None = None,
    ) -> None:
        _no_projection(proj_size)
        cell = partial(GRUCell, reset=reset, layer_norm=layer_norm)
        options = {"reset": reset} if reset != "after" else {}
        options.update({"layer_norm": True} if layer_norm else {})
        super().__init__(
            "GRU", cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, device, dtype, backend, options,
        )  # fmt: skip


class LSTM(_TorchCompatible):
    r"""Drop-in ``torch.nn.LSTM``, plus forget_gate, peephole, layer_norm and forget_bias.

    Args as ``torch.nn.LSTM`` (``proj_size`` P > 0: projections, ``weight_hr_l0`` (P, H), with
    every variant); the extra options as :class:`rnnlab.LSTMCell`, except that ``forget_bias``
    defaults to ``None`` here so that the default initialisation is torch's.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_gate: bool = True,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = None,
        backend: str = "auto",
    ) -> None:
        cell = partial(
            LSTMCell,
            proj_size=proj_size,
            forget_gate=forget_gate,
            peephole=peephole,
            layer_norm=layer_norm,
            forget_bias=forget_bias,
        )
        given = {
            "forget_gate": forget_gate,
            "peephole": peephole,
            "layer_norm": layer_norm,
            "forget_bias": forget_bias,
        }
        defaults = {"forget_gate": True, "peephole": False, "layer_norm": False}
        options = {k: v for k, v in given.items() if v != defaults.get(k)}
        super().__init__(
            "LSTM", cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, backend, options,
        )  # fmt: skip

    def get_expected_cell_size(
        self, input: Tensor, batch_sizes: Tensor | None
    ) -> tuple[int, int, int]:
        """(L*K, N, H): the shape of ``c`` for ``input`` (as ``torch.nn.LSTM``'s)."""
        layers, batch, _ = self.get_expected_hidden_size(input, batch_sizes)
        return (layers, batch, self.hidden_size)

    def check_forward_args(  # type: ignore[override]
        self, input: Tensor, hidden: tuple[Tensor, Tensor], batch_sizes: Tensor | None
    ) -> None:
        """:meth:`check_input` and the shapes of ``h`` and ``c``, as ``torch.nn.LSTM``'s."""
        self.check_input(input, batch_sizes)
        self.check_hidden_size(
            hidden[0],
            self.get_expected_hidden_size(input, batch_sizes),
            "Expected hidden[0] size {}, got {}",
        )
        self.check_hidden_size(
            hidden[1],
            self.get_expected_cell_size(input, batch_sizes),
            "Expected hidden[1] size {}, got {}",
        )


__all__ = ["GRU", "LSTM", "RNN"]

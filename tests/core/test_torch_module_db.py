"""PyTorch's own module tests for RNN, GRU and LSTM, run on ``torch.nn`` and on ``rnnlab.nn``.

The inputs are PyTorch's: the ``module_db`` entries of ``torch.testing._internal.common_modules``
(shipped with torch) for ``torch.nn.RNN``, ``GRU`` and ``LSTM``, their ``module_inputs_func``
(constructor and forward inputs, with a reference function for unbatched input) and their
``module_error_inputs_func`` (constructor and forward errors with types and message patterns).
The checks are written here after those of PyTorch's ``test/test_modules.py`` (forward against
the reference, factory kwargs, repr, pickle, state_dict, non-contiguous inputs, gradcheck and
gradgradcheck, train/eval, meta-device construction, memory formats, errors), plus parity:
``rnnlab.nn`` with stock ``torch.nn``'s weights gives its outputs and gradients.

The contract: each check runs first on stock ``torch.nn`` (the premise: it passes here), then on
``rnnlab.nn`` with the same inputs, which must pass too. The CUDA-only checks of
``test_modules.py`` (CPU/GPU parity, multiple device transfer) do not run on a CPU machine.
oneDNN is off here (both run ATen's LSTM kernel: oneDNN's costs ~15 ms per call on inputs this
small); parity on torch's default (oneDNN) kernel is tests/core/test_dropin.py's.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import product

import pytest
import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_map, tree_unflatten

import rnnlab.nn
from rnnlab.errors import RnnlabError


def _import_common_modules():  # torch's private test module
    """torch's test helpers; importing them freezes ``torch.backends`` flags process-wide
    (``disable_global_flags()``), which is undone here so that no other test is affected."""
    frozen = torch.backends.flags_frozen()
    from torch.testing._internal import common_modules

    if not frozen:
        vars(torch.backends)["__allow_nonbracketed_mutation_flag"] = True
    return common_modules


common_modules = _import_common_modules()
ModuleErrorEnum = common_modules.ModuleErrorEnum

STOCK = (nn.RNN, nn.GRU, nn.LSTM)
INFOS = {info.module_cls: info for info in common_modules.module_db if info.module_cls in STOCK}
OURS: dict[type[nn.Module], type[nn.Module]] = {
    nn.RNN: rnnlab.nn.RNN,
    nn.GRU: rnnlab.nn.GRU,
    nn.LSTM: rnnlab.nn.LSTM,
}
#: Test case -> (torch.nn class, which of its module_db samples). "LSTM-proj" holds the samples
#: with proj_size > 0 (projections, Sak et al. 2014).
CASES: dict[str, tuple[type[nn.Module], Callable[[dict], bool]]] = {
    "RNN": (nn.RNN, lambda kw: True),
    "GRU": (nn.GRU, lambda kw: True),
    "LSTM": (nn.LSTM, lambda kw: kw.get("proj_size", 0) == 0),
    "LSTM-proj": (nn.LSTM, lambda kw: kw.get("proj_size", 0) > 0),
}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def _samples(case: str, dtype: torch.dtype, requires_grad: bool = False, training: bool = True):
    stock, keep = CASES[case]
    info = INFOS[stock]
    inputs = info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=requires_grad, training=training
    )
    chosen = [s for s in inputs if s.forward_input is not None and keep(s.constructor_input.kwargs)]
    assert chosen, f"module_db has no {case} sample"
    return chosen


def _build(impl: str, case: str, ctor) -> nn.Module:  # ctor: torch's FunctionInput
    stock = CASES[case][0]
    cls = stock if impl == "torch" else OURS[stock]
    return cls(*ctor.args, **ctor.kwargs)


@contextmanager
def _without_onednn() -> Iterator[None]:
    """oneDNN off (torch.backends.mkldnn's switch): its LSTM costs ~15 ms a call on inputs this
    small, ATen's ~1 ms."""
    enabled = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(enabled)


@contextmanager
def _same_rng(seed: int = 0) -> Iterator[None]:
    """A fixed RNG state inside, the caller's restored after (as torch's freeze_rng_state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _tensors(tree: object) -> list[Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, Tensor)]


def _grad_leaves(args: tuple, kwargs: dict, m: nn.Module) -> list[Tensor]:
    """The forward inputs and parameters that require grad, in a fixed order."""
    return [t for t in _tensors((args, kwargs)) + list(m.parameters()) if t.requires_grad]


def _grads(outputs: object, leaves: list[Tensor], grad_outputs: list[Tensor]) -> list:
    outs = [o for o in _tensors(outputs) if o.requires_grad]
    return list(torch.autograd.grad(outs, leaves, grad_outputs, allow_unused=True))


def _random_like(outputs: object, seed: int = 1) -> list[Tensor]:
    with _same_rng(seed):
        return [torch.randn_like(o) for o in _tensors(outputs) if o.requires_grad]


def _assert_dtype_device(m: nn.Module, dtype: torch.dtype, device: str = "cpu") -> None:
    for name, t in [*m.named_parameters(), *m.named_buffers()]:
        assert t.device == torch.device(device), (name, t.device)
        if t.is_floating_point():
            assert t.dtype == dtype, (name, t.dtype)


# -- the checks (each after test_modules.py's of the same name) ------------------------------
def check_forward(impl: str, case: str, dtype: torch.dtype) -> None:
    """Forward equals module_db's reference (the unbatched input run as a batch of one), in
    training and eval mode; then ``.float()``/``.double()`` convert every parameter."""
    to_dtype = {torch.float32: nn.Module.float, torch.float64: nn.Module.double}[dtype]
    for training in (True, False):
        for sample in _samples(case, dtype, training=training):
            with _same_rng():
                m = _build(impl, case, sample.constructor_input).to(dtype)
                m.train(training)
                args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
                out = m(*args, **kwargs)
                torch.testing.assert_close(out, sample.reference_fn(m, *args, **kwargs))
                to_dtype(m)
                m(*args, **kwargs)
                _assert_dtype_device(m, dtype)


def check_parity(impl: str, case: str, dtype: torch.dtype) -> None:
    """With stock torch.nn's weights: stock's outputs and gradients (inputs and parameters)."""
    tol = {torch.float32: 1e-5, torch.float64: 1e-10}[dtype]
    for sample in _samples(case, dtype, requires_grad=True):
        stock = _build("torch", case, sample.constructor_input).to(dtype)
        m = _build(impl, case, sample.constructor_input).to(dtype)
        m.load_state_dict(stock.state_dict())
        args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
        results = []
        for module in (stock, m):
            out = module(*args, **kwargs)
            leaves = _grad_leaves(args, kwargs, module)
            results.append((out, _grads(out, leaves, _random_like(out))))
        (ref, ref_grads), (got, got_grads) = results
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
        assert [n for n, _ in m.named_parameters()] == [n for n, _ in stock.named_parameters()]
        for a, b in zip(got_grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def check_factory_kwargs(impl: str, case: str, dtype: torch.dtype) -> None:
    """``device=`` and ``dtype=`` reach every parameter and buffer."""
    for sample in _samples(case, dtype):
        ctor = sample.constructor_input
        ctor.kwargs.update(device="cpu", dtype=dtype)
        _assert_dtype_device(_build(impl, case, ctor), dtype)


def check_repr(impl: str, case: str, dtype: torch.dtype) -> None:
    """repr and str work, and rnnlab's equals torch.nn's (rnnlab options only where given)."""
    for sample in _samples(case, dtype):
        m = _build(impl, case, sample.constructor_input).to(dtype)
        expected = repr(_build("torch", case, sample.constructor_input))
        if sample.constructor_input.kwargs.get("nonlinearity") == "relu" and impl == "rnnlab":
            expected = expected[:-1] + ", nonlinearity='relu')"
        assert str(m) == repr(m) == expected


def check_pickle(impl: str, case: str, dtype: torch.dtype) -> None:
    """``torch.save(module)`` and ``torch.load`` give a module with the same outputs."""
    for sample in _samples(case, dtype):
        with _same_rng():
            m = _build(impl, case, sample.constructor_input).to(dtype)
            args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
            out = m(*args, **kwargs)
            buffer = io.BytesIO()
            torch.save(m, buffer)
            buffer.seek(0)
            copy = torch.load(buffer, weights_only=False)
            torch.testing.assert_close(copy(*args, **kwargs), out, rtol=0, atol=0)


def check_state_dict(impl: str, case: str, dtype: torch.dtype) -> None:
    """The state_dict, saved and loaded into a fresh module (strictly), gives the same outputs;
    its keys are torch.nn's."""
    for sample in _samples(case, dtype):
        m = _build(impl, case, sample.constructor_input).to(dtype)
        buffer = io.BytesIO()
        torch.save(m.state_dict(), buffer)
        buffer.seek(0)
        fresh = _build(impl, case, sample.constructor_input).to(dtype)
        fresh.load_state_dict(torch.load(buffer))
        stock_keys = list(_build("torch", case, sample.constructor_input).state_dict())
        assert list(fresh.state_dict()) == stock_keys
        args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
        torch.testing.assert_close(fresh(*args, **kwargs), m(*args, **kwargs), rtol=0, atol=0)


def _non_contiguous(tree: object) -> object:
    """Every tensor as a non-contiguous view (every other column of a wider one), same values."""

    def one(t: object) -> object:
        if not isinstance(t, Tensor) or t.dim() == 0:
            return t
        wide = t.detach().new_zeros(*t.shape[:-1], 2 * t.shape[-1])
        view = wide[..., ::2]
        view.copy_(t.detach())
        assert not view.is_contiguous()
        return view.requires_grad_(t.requires_grad)

    return tree_map(one, tree)


def check_non_contiguous(impl: str, case: str, dtype: torch.dtype) -> None:
    """Non-contiguous inputs and output gradients give the same outputs and gradients."""
    for sample in _samples(case, dtype, requires_grad=True):
        m = _build(impl, case, sample.constructor_input).to(dtype)
        inputs = (sample.forward_input.args, sample.forward_input.kwargs)
        out = m(*inputs[0], **inputs[1])
        grad_out = _random_like(out)
        expected = _grads(out, _grad_leaves(*inputs, m), grad_out)
        variants = [inputs, _non_contiguous(inputs)]
        for (args, kwargs), g_out in product(variants, [grad_out, _non_contiguous(grad_out)]):
            got = m(*args, **kwargs)
            torch.testing.assert_close(got, out)
            grads = _grads(got, _grad_leaves(args, kwargs, m), list(g_out))
            torch.testing.assert_close(grads, expected, atol=1e-4, rtol=0)


def _module_fn(m: nn.Module, n_args: int, spec: TreeSpec) -> Callable[..., list[Tensor]]:
    """``m``'s forward as a function of its flattened inputs then parameters (which gradcheck
    perturbs in place, so the module computes with them), returning its flattened outputs."""

    def fn(*values: Tensor) -> list[Tensor]:
        args = tree_unflatten(list(values), spec)[:n_args]
        with _same_rng():
            return tree_flatten(m(*args))[0]

    return fn


def _gradient_check(impl: str, case: str, dtype: torch.dtype, second_order: bool) -> None:
    """test_modules' gradient helper, with fast mode and batched gradients as torch's test
    wrapper sets them. gradcheck: the total derivative (w.r.t. the inputs and every parameter)
    of every time-major sample; with an initial state given, also the inputs alone and the
    parameters alone. gradgradcheck: the total derivative of the samples with an initial state.
    (torch's test takes every sample and each parameter alone: 17 checks per sample for a
    2-layer bidirectional RNN, minutes here; batch_first only transposes the input, which the
    other checks cover.)"""
    check = torch.autograd.gradgradcheck if second_order else torch.autograd.gradcheck
    for sample in _samples(case, dtype, requires_grad=True):
        args = sample.forward_input.args
        assert not sample.forward_input.kwargs  # module_db gives RNNs positional inputs only
        with_state = len(args) == 2
        if sample.constructor_input.kwargs["batch_first"] or (second_order and not with_state):
            continue
        m = _build(impl, case, sample.constructor_input).to(dtype)
        params = tuple(m.parameters())
        flat, spec = tree_flatten(args + params)
        fn = _module_fn(m, len(args), spec)
        assert check(fn, flat, check_batched_grad=True, fast_mode=True)
        if second_order or not with_state:
            continue
        for frozen in (params, _tensors(args)):
            for t in frozen:
                t.requires_grad_(False)
            assert check(fn, flat, check_batched_grad=True, fast_mode=True)
            for t in frozen:
                t.requires_grad_(True)


def check_grad(impl: str, case: str, dtype: torch.dtype) -> None:
    _gradient_check(impl, case, dtype, second_order=False)


def check_gradgrad(impl: str, case: str, dtype: torch.dtype) -> None:
    _gradient_check(impl, case, dtype, second_order=True)


def check_train_eval(impl: str, case: str, dtype: torch.dtype) -> None:
    """Without ``training`` the forward fails on reading it (module_db says train and eval
    differ for these modules) or runs."""
    stock = CASES[case][0]
    for sample in _samples(case, dtype):
        m = _build(impl, case, sample.constructor_input).to(dtype)
        del m.training
        try:
            m(*sample.forward_input.args, **sample.forward_input.kwargs)
        except AttributeError as e:
            assert "'training'" in str(e) and INFOS[stock].train_and_eval_differ, e


def check_device_ctx_init(impl: str, case: str, dtype: torch.dtype) -> None:
    """Built under ``torch.device("meta")``: meta parameters with the CPU ones' metadata."""
    for sample in _samples(case, dtype):
        cpu = _build(impl, case, sample.constructor_input)
        with torch.device("meta"):
            meta = _build(impl, case, sample.constructor_input)
        pairs = list(zip(meta.parameters(), cpu.parameters(), strict=True))
        pairs += list(zip(meta.buffers(), cpu.buffers(), strict=True))
        for p_meta, p_cpu in pairs:
            assert p_meta.is_meta
            assert (p_meta.shape, p_meta.dtype, p_meta.stride()) == (
                p_cpu.shape,
                p_cpu.dtype,
                p_cpu.stride(),
            )


def check_memory_format(impl: str, case: str, dtype: torch.dtype) -> None:
    """``module.to(memory_format=...)`` (contiguous formats: the inputs are 2-D and 3-D) keeps
    outputs and gradients, and the outputs contiguous."""
    for sample in _samples(case, dtype, requires_grad=True):
        m = _build(impl, case, sample.constructor_input).to(dtype)
        args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
        out = m(*args, **kwargs)
        grad_out = _random_like(out)
        expected = _grads(out, _grad_leaves(args, kwargs, m), grad_out)
        for fmt in (torch.preserve_format, torch.contiguous_format):
            m.to(memory_format=fmt)
            got = m(*args, **kwargs)
            torch.testing.assert_close(got, out)
            assert all(o.is_contiguous() for o in _tensors(got))
            grads = _grads(got, _grad_leaves(args, kwargs, m), grad_out)
            torch.testing.assert_close(grads, expected)


def check_errors(impl: str, case: str, dtype: torch.dtype) -> None:
    """module_db's error inputs: each raises its type, with a message matching its pattern."""
    stock = CASES[case][0]
    info = INFOS[stock]
    errors = info.module_error_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=False, training=True
    )
    assert errors
    for error in errors:
        sample = error.module_error_input
        with pytest.raises(error.error_type, match=error.error_regex) as raised:
            m = _build(impl, case, sample.constructor_input)
            if error.error_on == ModuleErrorEnum.FORWARD_ERROR:
                m(*sample.forward_input.args, **sample.forward_input.kwargs)
        if impl == "rnnlab":  # and rnnlab's own type, for the CLI's one-line report
            assert isinstance(raised.value, RnnlabError), raised.value


CHECKS = {
    name[len("check_") :]: check for name, check in globals().items() if name.startswith("check_")
}
GRADIENT_CHECKS = {"grad", "gradgrad"}  # float64 only (test_modules' allowed_dtypes)


def _params() -> list:
    params = []
    for case, (dname, dtype), check in product(CASES, DTYPES.items(), CHECKS):
        if check in GRADIENT_CHECKS and dtype != torch.float64:
            continue
        if check == "errors" and case == "LSTM-proj":  # the same error inputs as "LSTM"
            continue
        params.append(pytest.param(case, dtype, check, id=f"{case}-{dname}-{check}"))
    return params


@pytest.mark.parametrize(("case", "dtype", "check"), _params())
def test_module_db(case: str, dtype: torch.dtype, check: str) -> None:
    with _without_onednn():
        CHECKS[check]("torch", case, dtype)  # the premise: stock torch.nn passes it here
        CHECKS[check]("rnnlab", case, dtype)

"""bfloat16 and float16 layers on the fast path: the loop runs in float32 on the up-cast input,
weights and state, and the outputs are cast back; gradients reach the low-precision weights."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core import fast
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import cell_factory

pytestmark = pytest.mark.skipif(not fast.is_available(), reason="the C++ kernels did not build")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("name", "ln"), [("gru", False), ("peephole", False), ("lstm", True),
                                          ("mut3", False), ("elman", True)])  # fmt: skip
def test_low_precision_runs_the_fast_path_in_float32(
    name: str, ln: bool, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    low = Recurrent(cell_factory(name, layer_norm=ln), 5, 6, bidirectional=True).to(dtype)
    assert low.backend_for(torch.zeros(4, 2, 5, dtype=dtype)) == "fast"
    up = Recurrent(cell_factory(name, layer_norm=ln), 5, 6, bidirectional=True)
    up.load_state_dict({k: v.float() for k, v in low.state_dict().items()})
    x = torch.randn(3, 7, 5).to(dtype)
    lengths = torch.tensor([7, 2, 5])
    out, final = low(x, lengths=lengths)
    out_up, final_up = up(x.float(), lengths=lengths)
    assert out.dtype == dtype
    # the float32 computation up to the rounding of the input projection (a low-precision
    # GEMM) and of the outputs: a few units of the format's last place
    tol = 8 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), out_up, rtol=0, atol=tol)
    for a, b in zip(final if isinstance(final, tuple) else (final,),
                    final_up if isinstance(final_up, tuple) else (final_up,)):  # fmt: skip
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, rtol=0, atol=tol)
    out.float().square().sum().backward()
    out_up.square().sum().backward()
    for (name_, p), q in zip(low.named_parameters(), up.parameters()):
        assert p.grad is not None and p.grad.dtype == dtype, name_
        # the gradients differ only by the rounding of the backward's inputs and results
        torch.testing.assert_close(
            p.grad.float(), q.grad, rtol=0.05, atol=0.05 * q.grad.abs().max().item()
        )

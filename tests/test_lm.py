"""The character language model: data, model, sampling, training end to end."""

from __future__ import annotations

import pytest
import torch

from rnnlab.decoding import sample_next


def test_sample_next_greedy_top_k_and_seeded() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, temperature=0.0).tolist() == [1, 0]
    draws = [
        sample_next(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(s))
        for s in range(50)
    ]
    assert {int(d[0]) for d in draws} == {1, 3}  # only the two most likely
    a = [sample_next(logits, 0.8, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    # a very low temperature is almost greedy
    assert sample_next(logits, 1e-3, generator=torch.Generator().manual_seed(0)).tolist() == [1, 0]
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next(logits, 1.0, top_k=0)

"""minGRU and minLSTM (parallel scan) against the LSTM at equal parameter count: forward+backward
tokens/s at several sequence lengths, in one process, interleaved.

Equal parameter count: every model is one layer reading D = ``--hidden`` input features; the LSTM
has hidden size H = D (``4H(D + H) + 8H`` parameters, torch's two biases), and each minimal
cell the hidden size whose ``G*H'(D + 1)`` parameters (G = 2 for minGRU, 3 for minLSTM: the
gates and the candidate, one bias each) come nearest to the LSTM's. So the minimal cells are
wider (about 4x and 2.7x at D = H), as in Feng et al.'s comparisons.

Each repeat runs every model once, in turn (interleaved, so that a machine's slow spells hit
all of them alike), and the table gives the median tokens/s (N*T per forward+backward) and its
ratio to the LSTM's. The LSTM runs torch's fused kernel (rnnlab's ``"auto"``); the minimal cells
their parallel scan (``"auto"``, i.e. ``"fast"``), and with ``--loop`` also their step loop
(``"reference"``) at T <= 1,000.

Usage::

    python benchmarks/minimal.py [--hidden 128] [--batch 4] [--lengths 100,1000,10000]
                                 [--repeats 3] [--threads 2] [--device cpu] [--loop]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from rnnlab.core.backend import use_backend
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import cell_factory


def matched_hidden(cell: str, d: int, lstm_params: int) -> int:
    """The hidden size of ``cell`` (mingru, minlstm) whose parameter count is nearest
    ``lstm_params`` at input size ``d``."""
    gates = {"mingru": 2, "minlstm": 3}[cell]
    return max(1, round(lstm_params / (gates * (d + 1))))


def build(cell: str, d: int, h: int, device: str) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(cell_factory(cell), d, h, batch_first=False, device=device)


def step_time(model: Recurrent, x: torch.Tensor, backend: str) -> float:
    """Seconds for one forward+backward (synchronised on a GPU)."""
    sync: Callable[[], None] = torch.cuda.synchronize if x.is_cuda else lambda: None
    sync()
    t = time.perf_counter()
    with use_backend(backend):
        out, _ = model(x)
        out.square().mean().backward()
    sync()
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128, help="D, and the LSTM's H")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lengths", default="100,1000,10000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--loop", action="store_true", help="also the step loop, at T <= 1000")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    D, N = args.hidden, args.batch
    lstm = build("lstm", D, D, args.device)
    lstm_params = sum(p.numel() for p in lstm.parameters())
    models: dict[str, tuple[Recurrent, str]] = {"lstm": (lstm, "auto")}
    for cell in ("mingru", "minlstm"):
        layer = build(cell, D, matched_hidden(cell, D, lstm_params), args.device)
        models[cell] = (layer, "auto")
        if args.loop:
            models[f"{cell} (step loop)"] = (layer, "reference")
    print(
        f"forward+backward, one layer, D = {D}, batch {N}, {args.threads} threads, "
        f"{args.device}, median of {args.repeats}"
    )
    print("| model | H | parameters | T | implementation | tokens/s | / LSTM |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for T in map(int, args.lengths.split(",")):
        x = torch.randn(T, N, D, device=args.device)
        chosen = {k: v for k, v in models.items() if v[1] == "auto" or T <= 1000}
        times: dict[str, list[float]] = {name: [] for name in chosen}
        for model, backend in chosen.values():  # warm-up
            step_time(model, x, backend)
        for _ in range(args.repeats):
            for name, (model, backend) in chosen.items():
                times[name].append(step_time(model, x, backend))
        base = N * T / statistics.median(times["lstm"])
        for name, (model, backend) in chosen.items():
            rate = N * T / statistics.median(times[name])
            with use_backend(backend):
                impl = model.backend_for(x)
            count = sum(p.numel() for p in model.parameters())
            print(
                f"| {name} | {model.hidden_size} | {count:,} | {T:,} | {impl} | "
                f"{rate:,.0f} | {rate / base:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

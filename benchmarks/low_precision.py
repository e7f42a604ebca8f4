"""bfloat16 layers (``model.to(torch.bfloat16)``): speed against float32 and against the
reference loop, and accuracy against float64 over long sequences.

Speed: forward+backward of one layer, alternating float32 (fast path), bfloat16 (fast path: the
loop in float32 on the up-cast input, weights and state) and bfloat16 on the reference loop
(what ran before), median of ``--repeats`` in one process; ratios to float32.

Accuracy: one layer's outputs for a random input of ``--length`` steps, in float32 and in
bfloat16 (the same weights, rounded), against float64: the largest absolute error over the first
100 and the last 100 steps.

Usage::

    python benchmarks/low_precision.py [--cells gru,lstm,peephole,lstm+ln] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnlab.core.backend import use_backend
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import cell_factory


def layer(cell: str, d: int, h: int, dtype: torch.dtype) -> Recurrent:
    name, _, ln = cell.partition("+")
    torch.manual_seed(0)
    return Recurrent(cell_factory(name, layer_norm=ln == "ln"), d, h).to(dtype)


def step_time(model: Recurrent, x: torch.Tensor, backend: str = "auto") -> float:
    t = time.perf_counter()
    with use_backend(backend):
        out, _ = model(x)
        out.float().square().mean().backward()
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="gru,lstm,peephole,lstm+ln")
    p.add_argument("--shape", default="16,100,256", help="N,T,H of the speed test")
    p.add_argument("--length", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    N, T, H = map(int, args.shape.split(","))
    print(f"speed: forward+backward at (N, T, H) = ({N}, {T}, {H}), {args.threads} threads")
    print("| cell | float32 | bfloat16, fast path | bfloat16, reference loop |")
    print("| --- | ---: | ---: | ---: |")
    for cell in args.cells.split(","):
        models = {
            "f32": (layer(cell, H, H, torch.float32), torch.float32, "auto"),
            "bf16": (layer(cell, H, H, torch.bfloat16), torch.bfloat16, "auto"),
            "ref": (layer(cell, H, H, torch.bfloat16), torch.bfloat16, "reference"),
        }
        x = torch.randn(N, T, H)
        times: dict[str, list[float]] = {k: [] for k in models}
        for m, dt, b in models.values():  # warm-up
            step_time(m, x.to(dt), b)
        for _ in range(args.repeats):
            for k, (m, dt, b) in models.items():
                times[k].append(step_time(m, x.to(dt), b))
        f32 = statistics.median(times["f32"])
        cols = [f"{f32 * 1e3:.0f} ms"] + [
            f"{statistics.median(times[k]) * 1e3:.0f} ms ({statistics.median(times[k]) / f32:.2f}x)"
            for k in ("bf16", "ref")
        ]
        print(f"| {cell} | " + " | ".join(cols) + " |")
    print(f"\naccuracy against float64, T = {args.length}, H = 128, largest |error|")
    print(
        "| cell | float32 first 100 | float32 last 100 | bfloat16 first 100 | bfloat16 last 100 |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for cell in args.cells.split(","):
        ref_model = layer(cell, 32, 128, torch.float64)
        torch.manual_seed(1)
        x = torch.randn(4, args.length, 32, dtype=torch.float64)
        with torch.no_grad():
            ref, _ = ref_model(x)
            cols = []
            for dt in (torch.float32, torch.bfloat16):
                m = layer(cell, 32, 128, dt)
                m.load_state_dict(ref_model.state_dict())  # rounds float64 to dt
                out, _ = m(x.to(dt))
                err = (out.double() - ref).abs()
                cols += [f"{err[:, :100].max():.1e}", f"{err[:, -100:].max():.1e}"]
        print(f"| {cell} | " + " | ".join(cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""torch.compile on rnnlab's language model: cold compile time, and a training step compiled
against eager, measured in one process, alternating (eager, compiled, eager, ...).

The model is the LM's default (embedding 128, 2x512 cells, 65 symbols; AdamW) on random
windows of 50 characters, batch 32: what ``rnnlab train lm`` runs. For each cell the script
builds one model, compiles it with ``torch.compile(dynamic=True)`` as ``rnnlab train --compile``
does (forward and loss; AOTAutograd traces the backward with it; the optimizer step stays eager
in both), times the first compiled training step
(the cold compile, with Inductor's caches off so that earlier runs do not help), checks that both
give the same loss, then times ``--repeats`` rounds of ``--steps`` steps each way (wall time:
the intra-op threads' work is not in the calling thread's CPU time), alternating, and reports
the median of the per-round ratios.

Usage::

    python benchmarks/compile.py [--cells lstm,gru+ln] [--steps 10] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # a cold compile, every run

import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.tasks.lm.config import LMConfig
from rnnlab.tasks.lm.model import RNNLM


def build(cell: str, hidden: int, layers: int) -> RNNLM:
    name, _, ln = cell.partition("+")
    rnn = RecurrentConfig(cell=name, hidden_size=hidden, num_layers=layers, layer_norm=ln == "ln")
    return RNNLM(LMConfig(vocab_size=65, embedding_size=128, rnn=rnn))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="lstm,gru+ln")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, window "
          f"{args.window}, {args.layers}x{args.hidden}")  # fmt: skip
    print("| cell | cold compile | eager step | compiled step | compiled / eager time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for cell in args.cells.split(","):
        torch.manual_seed(0)
        model = build(cell, args.hidden, args.layers)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(x: torch.Tensor, y: torch.Tensor, model: torch.nn.Module = model) -> torch.Tensor:
            (_, _), loss = model(x, y)
            loss.backward()
            return loss

        # as `rnnlab train --compile` does: the model compiled, its backward traced with it
        net = torch.compile(model, dynamic=True)

        def compiled(x: torch.Tensor, y: torch.Tensor, net: torch.nn.Module = net) -> torch.Tensor:
            return step(x, y, net)

        x = torch.randint(65, (args.batch, args.window))
        y = torch.randint(65, (args.batch, args.window))
        torch._dynamo.reset()
        t0 = time.perf_counter()
        loss_c = compiled(x, y)
        cold = time.perf_counter() - t0
        opt.zero_grad()
        loss_e = step(x, y)
        opt.zero_grad()
        assert abs(float(loss_c) - float(loss_e)) < 1e-4, (float(loss_c), float(loss_e))
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for fn in (step, compiled):  # warm both
            fn(x, y)
            opt.step()
            opt.zero_grad()
        for _ in range(args.repeats):
            for name, fn in (("eager", step), ("compiled", compiled)):
                t = time.perf_counter()
                for _ in range(args.steps):
                    fn(x, y)
                    opt.step()
                    opt.zero_grad()
                times[name].append((time.perf_counter() - t) / args.steps)
        ratios = [c / e for c, e in zip(times["compiled"], times["eager"])]
        e_ms = statistics.median(times["eager"]) * 1e3
        c_ms = statistics.median(times["compiled"]) * 1e3
        spread = f"({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"| {cell} | {cold:.1f} s | {e_ms:.0f} ms | {c_ms:.0f} ms | "
              f"{statistics.median(ratios):.2f}x {spread} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

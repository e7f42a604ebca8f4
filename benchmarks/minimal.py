"""minGRU and minLSTM (parallel scan) against the LSTM and GRU at equal parameter count:
forward+backward tokens/s at several sequence lengths, in one process, interleaved.

The speed part of ``rnnlab experiment minimal`` (see its module for the protocol), printed as a
Markdown table for docs/BENCHMARKS.md::

    python benchmarks/minimal.py [--input 128] [--batch 4] [--lengths 100,1000,10000]
                                 [--repeats 5] [--threads 2]

With ``--lm CELL:HxL,...`` it times training steps of the character language model instead
(batch 32, windows of 50, forward + backward + AdamW; interleaved; the 2x512 LSTM first, as
the reference)::

    python benchmarks/minimal.py --lm mingru:1024x2,mingru:1024x3,minlstm:1024x2 --repeats 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnlab.analysis.experiments.minimal import MinimalConfig, speed_rows


def lm_steps(specs: list[str], repeats: int) -> None:
    """Characters/s of LM training steps for each ``cell:HxL`` (and the 2x512 LSTM)."""
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.tasks.lm.config import LMConfig
    from rnnlab.tasks.lm.model import RNNLM

    models = {}
    for spec in ["lstm:512x2", *specs]:
        cell, size = spec.split(":")
        hidden, layers = map(int, size.split("x"))
        torch.manual_seed(0)
        rnn = RecurrentConfig(cell, hidden_size=hidden, num_layers=layers, dropout=0.2)
        model = RNNLM(LMConfig(vocab_size=65, rnn=rnn))
        models[spec] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    x, y = torch.randint(65, (32, 50)), torch.randint(65, (32, 50))

    def step(model: RNNLM, optimizer: torch.optim.Optimizer) -> float:
        start = time.perf_counter()
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for pair in models.values():  # warm-up
        step(*pair), step(*pair)
    times: dict[str, list[float]] = {spec: [] for spec in models}
    for _ in range(repeats):
        for spec, pair in models.items():
            times[spec].append(step(*pair))
    base = statistics.median(times["lstm:512x2"])
    print("| model | parameters | characters/s | / LSTM |")
    print("| --- | ---: | ---: | ---: |")
    for spec, (model, _) in models.items():
        median = statistics.median(times[spec])
        count = sum(p.numel() for p in model.parameters())
        print(f"| {spec} | {count / 1e6:.2f}M | {x.numel() / median:,.0f} | {base / median:.2f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=int, default=128, help="D, and the LSTM's H")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lengths", default="100,1000,10000")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cells", default="lstm,gru,mingru,minlstm")
    p.add_argument("--lm", default="", help="cell:HxL,...: time LM training steps instead")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.lm:
        lm_steps(args.lm.split(","), args.repeats)
        return 0
    config = MinimalConfig(
        cells=tuple(args.cells.split(",")),
        speed_lengths=tuple(map(int, args.lengths.split(","))),
        speed_input=args.input,
        speed_batch=args.batch,
        speed_repeats=args.repeats,
    )
    print(
        f"forward+backward, one layer, D = {args.input}, batch {args.batch}, {args.threads} "
        f"threads, median of {args.repeats}, torch {torch.__version__}"
    )
    print("| cell | H | parameters | T | implementation | tokens/s | / LSTM |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in speed_rows(config):
        ratio = "" if r["vs_lstm"] is None else f"{r['vs_lstm']:.2f}"
        print(
            f"| {r['cell']} | {r['hidden']} | {r['params']:,} | {r['T']:,} | "
            f"{r['implementation']} | {r['tokens_per_s']:,.0f} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

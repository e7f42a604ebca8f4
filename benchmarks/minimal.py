"""minGRU and minLSTM (parallel scan) against the LSTM and GRU at equal parameter count:
forward+backward tokens/s at several sequence lengths, in one process, interleaved.

The speed part of ``rnnlab experiment minimal`` (see its module for the protocol), printed as a
Markdown table for docs/BENCHMARKS.md::

    python benchmarks/minimal.py [--input 128] [--batch 4] [--lengths 100,1000,10000]
                                 [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from rnnlab.analysis.experiments.minimal import MinimalConfig, speed_rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=int, default=128, help="D, and the LSTM's H")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lengths", default="100,1000,10000")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cells", default="lstm,gru,mingru,minlstm")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
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

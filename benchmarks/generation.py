"""Generation speed: rnnlab's language model sampling against a plain torch.nn.LSTM loop of the
same model (same weights), one character at a time, in one process, alternating.

The plain loop is what a user writes by hand: embedding -> torch.nn.LSTM (one step, carried
state) -> linear -> softmax / temperature -> torch.multinomial. It runs with torch's defaults
(oneDNN on) and with oneDNN off. rnnlab's is ``RNNLM.generate`` (what ``rnnlab sample`` and the
viz page run) at the same temperature.

Usage::

    python benchmarks/generation.py [--run RUN] [--chars 300] [--repeats 5] [--threads 1]

Without ``--run``: a fresh default model (2x512 LSTM, embedding 128, 65 symbols).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a language-model run or checkpoint (default: a fresh model)")
    p.add_argument("--chars", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--temperature", type=float, default=0.8)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.run:
        from rnnlab.tasks.runner import load_run

        model = load_run(args.run, task="lm").model
    else:
        from rnnlab.core.registry import RecurrentConfig
        from rnnlab.tasks.lm.model import RNNLM, LMConfig

        torch.manual_seed(0)
        rnn = RecurrentConfig("lstm", 512, num_layers=2)
        model = RNNLM(LMConfig(vocab_size=65, embedding_size=128, rnn=rnn))
    model.eval()
    cells = model.rnn.cells
    H, L = model.rnn.hidden_size, model.rnn.num_layers
    plain = torch.nn.LSTM(cells[0].weight_ih.shape[1], H, L, batch_first=True).eval()
    with torch.no_grad():  # the same weights
        for layer in range(L):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(plain, f"{name}_l{layer}").copy_(getattr(cells[layer], name))
    prime = torch.tensor([1, 2, 3])

    def rnnlab_loop() -> int:
        g = torch.Generator().manual_seed(0)
        return sum(1 for _ in model.generate(prime, args.chars, args.temperature, None, g))

    def plain_loop() -> int:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            out, state = plain(model.embedding(prime.unsqueeze(0)))
            for _ in range(args.chars):
                logits = model.decoder(out[:, -1]) / args.temperature
                token = torch.multinomial(logits.softmax(-1), 1, generator=g)
                out, state = plain(model.embedding(token), state)
        return args.chars

    def plain_no_onednn() -> int:
        with torch.backends.mkldnn.flags(enabled=False):
            return plain_loop()

    loops = {
        "rnnlab generate": rnnlab_loop,
        "plain torch.nn.LSTM loop": plain_loop,
        "plain loop, oneDNN off": plain_no_onednn,
    }
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for loop in loops.values():  # warm-up
        loop()
    for _ in range(args.repeats):
        for name, loop in loops.items():
            start = time.thread_time()  # this thread's CPU time: steadier than the wall clock
            n = loop()
            rates[name].append(n / (time.thread_time() - start))
    base = statistics.median(rates["plain torch.nn.LSTM loop"])
    print(f"{L}x{H} LSTM, {args.chars} chars x {args.repeats} repeats, {args.threads} thread(s), "
          "characters per second of CPU time")  # fmt: skip
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:26s} {median:8.0f} chars/s  ({median / base:.2f}x the plain loop)")
    pairs = [a / b for a, b in zip(rates["rnnlab generate"], rates["plain loop, oneDNN off"])]
    print(f"  rnnlab / plain loop with oneDNN off, repeat by repeat: median "
          f"{statistics.median(pairs):.3f} (range {min(pairs):.3f}-{max(pairs):.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

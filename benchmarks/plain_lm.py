"""The baseline for rnnlab's character language model: the same model in plain PyTorch.

Deliberately independent of rnnlab (torch only): ``torch.nn.LSTM`` with the same architecture,
initialisation (forget-gate bias 1), data layout (B parallel contiguous streams, truncated BPTT,
state reset at epoch start, windows shifted by a random offset after the first epoch),
optimizer (AdamW), learning-rate schedule (warm-up, then cosine to a floor over the wall-clock
budget),
clipping, validation (whole validation split, 32 streams x 256, state carried) and
checkpointing (once per validation) as ``rnnlab train lm``'s defaults, so that the two can be
compared on tokens/s and on validation loss against wall-clock time. Like rnnlab's trainer it
counts validation against the budget and stops training when the final validation would not fit
in it any more (the last validation's duration, a tenth of the budget before the first).

    python benchmarks/plain_lm.py --time-budget 1800 --out runs/plain

Writes ``OUT/eval.csv`` (step, elapsed_s, val_loss), ``OUT/result.json`` and ``OUT/model.pt``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent / "rnnlab" / "data" / "corpora" / "tinyshakespeare.txt"


class CharLSTM(nn.Module):
    def __init__(
        self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float, io: float
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.drop = nn.Dropout(io)
        self.lstm = nn.LSTM(embedding, hidden, layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)
        with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al. 2015), as rnnlab's LSTM
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    p[hidden : 2 * hidden].fill_(1.0)
                elif name.startswith("bias_hh"):
                    p[hidden : 2 * hidden].zero_()

    def forward(self, x, state=None):
        out, state = self.lstm(self.drop(self.embedding(x)), state)
        return self.decoder(self.drop(out)), state


def streams(ids: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    per = (len(ids) - 1) // batch
    n = per * batch
    return ids[:n].view(batch, per), ids[1 : n + 1].view(batch, per)


@torch.no_grad()
def evaluate(model: CharLSTM, ids: torch.Tensor, batch: int = 32, seq_len: int = 256) -> float:
    model.eval()
    x, y = streams(ids, batch)
    total, count, state = 0.0, 0, None
    for i in range(0, x.shape[1], seq_len):
        logits, state = model(x[:, i : i + seq_len], state)
        target = y[:, i : i + seq_len]
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
        total += float(loss) * target.numel()
        count += target.numel()
    model.train()
    return total / count


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--time-budget", type=float, default=1800.0, help="seconds")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.2, help="between the LSTM layers")
    p.add_argument("--io-dropout", type=float, default=0.0, help="on embedding and decoder input")
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--optimizer", choices=("adam", "adamw"), default="adamw")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta2", type=float, default=0.999, help="Adam's second-moment decay")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument(
        "--no-shift", action="store_true", help="same windows every epoch (default: shifted)"
    )
    p.add_argument("--eval-every", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/plain-lm"))
    p.add_argument(
        "--classic",
        action="store_true",
        help="the textbook recipe instead of rnnlab's: Adam 2e-3, constant, no warm-up, no "
        "weight decay, windows of 100 (what CLASSIC sets; flags given after it still win)",
    )
    return p


#: The textbook char-RNN recipe (Karpathy's char-rnn and its many ports): what ``--classic`` sets.
CLASSIC = {
    "optimizer": "adam", "lr": 2e-3, "schedule": "constant", "warmup": 0, "weight_decay": 0.0,
    "seq_len": 100,
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; with ``--classic`` the textbook recipe's values where no flag gave one."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.classic:
        parser.set_defaults(**CLASSIC)
        args = parser.parse_args(argv)
    return args


def main() -> None:
    args = parse_args()

    torch.manual_seed(args.seed)
    text = args.data.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_train = int(len(ids) * 0.9)
    train_ids, val_ids = ids[:n_train], ids[n_train:]
    x_all, y_all = streams(train_ids, args.batch)

    model = CharLSTM(
        len(chars), args.embedding, args.hidden, args.layers, args.dropout, args.io_dropout
    )
    make = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = make(
        model.parameters(), lr=args.lr, betas=(0.9, args.beta2), weight_decay=args.weight_decay
    )
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    step, elapsed, state = 0, 0.0, None
    reserve = 0.1 * args.time_budget  # the final validation's time, until one has been timed
    train_tokens, train_time = 0, 0.0
    best = math.inf
    mark = time.perf_counter()
    done, epoch = False, 0
    while not done:
        offset = 0  # epochs after the first start their windows at a random offset < seq_len
        if epoch > 0 and not args.no_shift:
            g = torch.Generator().manual_seed(epoch)
            offset = int(torch.randint(0, args.seq_len, (1,), generator=g))
        n_batches = (x_all.shape[1] - offset) // args.seq_len
        epoch += 1
        for i in range(n_batches):
            if i == 0:
                state = None  # reset at every epoch's start
            window = slice(offset + i * args.seq_len, offset + (i + 1) * args.seq_len)
            x, y = x_all[:, window], y_all[:, window]
            progress = elapsed / args.time_budget
            if args.max_steps:
                progress = max(progress, step / args.max_steps)
            lr = args.lr
            if step < args.warmup:
                lr = args.lr * (step + 1) / args.warmup
            elif args.schedule == "cosine":
                lr = args.min_lr + (args.lr - args.min_lr) * 0.5 * (
                    1 + math.cos(math.pi * min(progress, 1.0))
                )
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            step += 1
            now = time.perf_counter()
            dt, mark = now - mark, now
            elapsed += dt
            train_tokens += x.numel()
            train_time += dt
            # the final validation must fit in the budget too (rnnlab's rule): keep the last
            # one's duration, or a tenth of the budget before the first
            done = elapsed + reserve >= args.time_budget
            done = done or bool(args.max_steps and step >= args.max_steps)
            if step % args.eval_every == 0 or done:
                eval_start = time.perf_counter()
                val = evaluate(model, val_ids)
                best = min(best, val)
                torch.save(model.state_dict(), args.out / "model.pt")
                now = time.perf_counter()
                elapsed += now - mark
                reserve = now - eval_start
                mark = now
                rows.append({"step": step, "elapsed_s": round(elapsed, 2), "val_loss": val})
                print(
                    f"step {step} {elapsed / 60:.1f} min: val {val:.4f} "
                    f"train {loss.item():.4f} {train_tokens / train_time:,.0f} tok/s",
                    flush=True,
                )
                done = done or elapsed >= args.time_budget
            if done:
                break
    with open(args.out / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = {
        "steps": step,
        "elapsed": elapsed,
        "best_val_loss": best,
        "tokens_per_s": train_tokens / train_time,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Training throughput on a busy machine: the default character LM's tokens/s when 0, 1 or 2
CPU-bound processes compete for the cores, for several thread settings.

Each measurement is a fresh process (OpenMP reads its settings when torch is first imported)
that trains the default ``rnnlab train lm`` model for ``--seconds`` of steps, after ``--warmup``
steps, and reports characters per second. The competitors are ``while True: pass`` loops.
Settings and loads are interleaved (every setting at load 0, 1, 2, then again), so that a
drifting machine affects them alike.

Usage::

    python benchmarks/under_load.py [--seconds 12] [--repeats 2] [--settings torch,passive,...]

Settings:

* ``torch``: torch's defaults (one thread per core; OpenMP threads spin while they wait), with
  rnnlab's own thread policy switched off (``RNNLAB_THREADS=torch``).
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once).
* ``spin``: ``GOMP_SPINCOUNT=10000`` (spin briefly, then sleep).
* ``one``: one thread.
* ``rnnlab``: what rnnlab commands do by default (see ``rnnlab.machine``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, dict[str, str]] = {
    "torch": {"RNNLAB_THREADS": "torch"},
    "passive": {"RNNLAB_THREADS": "torch", "OMP_WAIT_POLICY": "PASSIVE"},
    "spin": {"RNNLAB_THREADS": "torch", "GOMP_SPINCOUNT": "10000"},
    "one": {"RNNLAB_THREADS": "torch", "OMP_NUM_THREADS": "1"},
    "rnnlab": {},
}

WORKER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
seconds, warmup = float(sys.argv[2]), int(sys.argv[3])
import torch
from rnnlab.machine import choose_threads
policy = choose_threads(None)
from rnnlab.tasks import get_task
task = get_task("lm")
config = task.config()
data = task.load(config)
torch.manual_seed(0)
model = task.build_model(config, data)
loss_fn = task.loss_fn(config, data)
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
batches = task.batches(config, data)
model.train()
tokens, start, done = 0, None, 0
for epoch in range(1000):
    for batch in batches(epoch):
        loss, n = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if policy is not None:
            policy.update()
        done += 1
        if done == warmup:
            start = time.perf_counter()
        elif start is not None:
            tokens += n
            if time.perf_counter() - start >= seconds:
                break
    else:
        continue
    break
print(tokens / (time.perf_counter() - start), torch.get_num_threads())
if policy is not None:
    print("policy changes", policy.changes, file=sys.stderr)
"""


def measure(setting: str, load: int, seconds: float, warmup: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "RNNLAB_"))}
    env.update(SETTINGS[setting])
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        out = subprocess.run(
            [sys.executable, "-c", WORKER, str(ROOT), str(seconds), str(warmup)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return float(out[0]), int(out[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--loads", default="0,1,2")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()
    settings = args.settings.split(",")
    loads = [int(x) for x in args.loads.split(",")]
    rates: dict[str, dict[int, list[float]]] = {s: {n: [] for n in loads} for s in settings}
    threads: dict[str, int] = {}
    for r in range(args.repeats):
        for s in settings:
            for n in loads:
                rate, threads[s] = measure(s, n, args.seconds, args.warmup)
                rates[s][n].append(rate)
                print(f"repeat {r} {s:8s} load {n}: {rate:8.0f} chars/s", flush=True)
                time.sleep(1)
    quiet = max(sum(rates[s][0]) / len(rates[s][0]) for s in settings) if 0 in loads else None
    print(f"\n{'setting':8s} threads " + " ".join(f"{'load ' + str(n):>16s}" for n in loads))
    for s in settings:
        cells = []
        for n in loads:
            mean = sum(rates[s][n]) / len(rates[s][n])
            share = f" ({mean / quiet:.2f}x)" if quiet else ""
            cells.append(f"{mean:7.0f}{share:>9s}")
        print(f"{s:8s} {threads[s]:7d} " + " ".join(cells))
    if quiet:
        print("(x: of the best quiet setting's chars/s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "threads": threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

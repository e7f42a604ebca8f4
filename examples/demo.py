"""rnnlab's main job: train a character language model on Shakespeare, then let it write.

Trains the default model (a 2x512 LSTM on tiny-shakespeare, see ``rnnlab train lm --help``) for
about three minutes, then prints a 300-character sample from its best checkpoint. The same two
steps from a shell::

    rnnlab train lm --time-budget 3m --out runs/demo
    rnnlab sample runs/demo --prime "ROMEO:" --length 300

Usage: ``python examples/demo.py [--time-budget 3m] [--out runs/demo]`` (``make demo``).
"""

from __future__ import annotations

import argparse
import sys

from rnnlab.cli import main


def demo() -> int:
    p = argparse.ArgumentParser(description="Train a char-RNN on Shakespeare and sample from it.")
    p.add_argument("--time-budget", default="3m", help="training time (default 3m)")
    p.add_argument("--out", default="runs/demo", help="run directory (replaced)")
    args = p.parse_args()
    # A short run is far from overfitting, so less dropout than the 30-minute default helps.
    code = main(
        ["train", "lm", "--time-budget", args.time_budget, "--out", args.out, "--overwrite",
         "--dropout", "0.1", "--eval-every", "200", "--sample", "0"]
    )  # fmt: skip
    if code:
        return code
    print("\n--- 300 characters from the best checkpoint (temperature 0.8) ---", flush=True)
    return main(["sample", args.out, "--prime", "ROMEO:", "--length", "300", "--seed", "0"])


if __name__ == "__main__":
    sys.exit(demo())

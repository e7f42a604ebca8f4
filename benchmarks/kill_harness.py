"""Kill a training run at random moments, resume it each time, compare with an uninterrupted run.

Runs ``rnnlab train lm`` through the real command line in a subprocess (a tiny LSTM language
model on a small generated text, ``--max-steps``, a small ``--eval-every``, one thread, a fixed
``--seed``), SIGKILLs it at ``--kills`` random moments spread over training steps, validations and
checkpoint writes, and restarts it with ``--resume`` after each kill (or afresh, with
``--overwrite``, if it was killed before its first checkpoint). ``RNNLAB_TEST_SAVE_STEP_DELAY``
(honoured by :mod:`rnnlab.train.checkpoint`) makes each checkpoint write sleep between its
steps (each file, each rename), so that kills land inside it. After every kill the latest
checkpoint must load (:func:`rnnlab.train.checkpoint.load_checkpoint`); at the end the
killed-and-resumed run's ``last/`` and ``best/`` weights must equal an uninterrupted run's,
tensor by tensor (``torch.equal``: bit-exact on CPU).

Usage (the figures in docs/RELIABILITY.md)::

    .venv/bin/python benchmarks/kill_harness.py --kills 20

Exit code 0 when every check passed; one summary line on stdout (``--json`` for a JSON record).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import load_checkpoint

SAVE_DELAY_ENV = "RNNLAB_TEST_SAVE_STEP_DELAY"
#: the generated text's words (a small vocabulary, so that the tiny model learns something)
_VOCABULARY = "the a to of and king queen lord my thy thee art is not what shall we"
_WORDS = tuple(_VOCABULARY.split())


@dataclass
class Report:
    kills: int = 0
    kills_in_checkpoint_write: int = 0  # a temporary .last.*/.best.* left, or last/ missing
    kills_between_renames: int = 0  # of which last/ or best/ was moved aside, not yet replaced
    resumes: int = 0
    fresh_restarts: int = 0  # killed before the first checkpoint: started again
    checkpoint_loads: int = 0  # checks after kills that the latest checkpoint loads
    steps: int = 0
    bit_exact: bool = False
    differing: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def write_text(path: Path, seed: int, words: int = 6000) -> None:
    rng = random.Random(seed)
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(_WORDS))
        if len(line) >= rng.randint(5, 12):
            lines.append(" ".join(line).capitalize() + ".")
            line = []
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def command(data: Path, out: Path, args: argparse.Namespace, mode: str) -> list[str]:
    flags = [
        "train", "lm", "--data", str(data), "--out", str(out), f"--{mode}",
        "--cell", "lstm", "--hidden", "32", "--layers", "1", "--embedding", "16",
        "--seq-len", "20", "--batch", "8", "--warmup", "5",
        "--max-steps", str(args.max_steps), "--eval-every", str(args.eval_every),
        "--log-every", "1", "--seed", str(args.seed), "--sample", "0", "--no-progress",
        "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    code = "import sys; from rnnlab.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *flags]


def run_to_end(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"kill_harness: {cmd[3:6]} failed:\n{proc.stderr[-2000:]}")


def _in_write(run: Path) -> tuple[bool, bool]:
    """(killed inside a checkpoint write, killed between its two renames), from what it left:
    a sibling temporary ``.last.*``/``.best.*``, and a checkpoint moved aside but not back."""
    names = os.listdir(run) if run.is_dir() else []
    temporaries = [n for n in names if n.startswith((".last.", ".best."))]
    aside = [
        n for n in ("last", "best") if any(t.startswith(f".{n}.rnnlab-old") for t in temporaries)
    ]
    return bool(temporaries), any(not (run / n).exists() for n in aside)


def _has_checkpoint(run: Path) -> bool:
    try:
        load_checkpoint(run, prefer="last")
    except RnnlabError:
        return False
    return True


def compare(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ between the checkpoints (last and best) of runs a, b."""
    differing = []
    for name in ("last", "best"):
        sa, sb = load_checkpoint(a / name).state_dict, load_checkpoint(b / name).state_dict
        if sa.keys() != sb.keys():
            differing.append(f"{name}: different tensor names")
            continue
        differing += [f"{name}/{k}" for k in sa if not torch.equal(sa[k], sb[k])]
    return differing


def harness(args: argparse.Namespace) -> Report:
    start = time.perf_counter()
    rng = random.Random(args.seed)
    report = Report()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rnnlab-kills-"))
    work.mkdir(parents=True, exist_ok=True)
    data, reference, killed = work / "text.txt", work / "reference", work / "killed"
    write_text(data, args.seed)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(SAVE_DELAY_ENV, None)
    run_to_end(command(data, reference, args, "overwrite"), env)

    env[SAVE_DELAY_ENV] = str(args.save_delay)
    finished = False
    while report.kills < args.kills:
        resume = _has_checkpoint(killed)
        mode = "resume" if resume else "overwrite"
        report.resumes += resume
        report.fresh_restarts += not resume
        launched = time.time()
        proc = subprocess.Popen(
            command(data, killed, args, mode),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # wait until it trains (its metrics.csv is written), then kill at a random moment
        metrics = killed / "metrics.csv"
        while proc.poll() is None and not (
            metrics.exists() and metrics.stat().st_mtime >= launched
        ):
            time.sleep(0.02)
        if proc.poll() is None:
            time.sleep(rng.uniform(0.0, args.window))
        if proc.poll() is not None:  # it finished (or failed) before the kill
            err = proc.stderr.read() if proc.stderr else ""
            if proc.returncode != 0:
                raise SystemExit(f"kill_harness: the run failed (exit {proc.returncode}):\n{err}")
            finished = True
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        report.kills += 1
        in_write, between = _in_write(killed)
        report.kills_in_checkpoint_write += in_write
        report.kills_between_renames += between
        if _has_checkpoint(killed):
            load_checkpoint(killed, prefer="last")  # raises if the latest checkpoint is broken
            report.checkpoint_loads += 1
        elif report.resumes:
            raise SystemExit("kill_harness: after a kill, no checkpoint loads any more")
    if not finished:  # the last stretch, uninterrupted
        mode = "resume" if _has_checkpoint(killed) else "overwrite"
        report.resumes += mode == "resume"
        run_to_end(command(data, killed, args, mode), env)
    report.steps = load_checkpoint(killed, prefer="last").training_state["step"]
    report.differing = compare(reference, killed)
    report.bit_exact = not report.differing and report.steps == args.max_steps
    report.wall_s = round(time.perf_counter() - start, 1)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to land (default 20)")
    p.add_argument("--max-steps", type=int, default=120, help="the run's length (default 120)")
    p.add_argument("--eval-every", type=int, default=5, help="validate+checkpoint every N steps")
    p.add_argument(
        "--save-delay", type=float, default=0.04, help="seconds slept between a save's steps"
    )
    p.add_argument("--window", type=float, default=1.5, help="kill within this many seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = harness(args)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.kills} kills ({report.kills_in_checkpoint_write} inside checkpoint writes, "
            f"{report.kills_between_renames} of them between its renames), "
            f"{report.resumes} resumes, {report.fresh_restarts} fresh restarts, "
            f"{report.checkpoint_loads} checkpoint loads after kills, {report.steps} steps; "
            f"final weights {'bit-exact' if report.bit_exact else 'DIFFERENT'} vs an "
            f"uninterrupted run; {report.wall_s} s"
            + (f" (differing: {', '.join(report.differing[:5])})" if report.differing else "")
        )
    return 0 if report.bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())

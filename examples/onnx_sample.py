"""Write Shakespeare with onnxruntime and numpy alone: no torch, no rnnlab.

Reads a character language model exported by ``rnnlab export RUN --onnx FILE.onnx``: the
sequence graph ``FILE.onnx`` reads the prime in one call, the step graph ``FILE-step.onnx`` then
generates one character per call, the state carried from each call to the next. Everything else
(the vocabulary, the tokenizer, the state's names and shape, the sibling file) is read from the
files' metadata. The same options as ``rnnlab sample``; with ``--greedy`` the text is exactly
``rnnlab sample RUN --greedy``'s; sampled text is reproducible with ``--seed`` (numpy's random
generator, so not torch's draws)::

    rnnlab train lm --time-budget 3m --out runs/demo
    rnnlab export runs/demo --onnx shakespeare.onnx
    python examples/onnx_sample.py shakespeare.onnx --prime "ROMEO:" --length 300 --seed 0

Needs ``pip install onnxruntime numpy``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

#: what onnxruntime raises for a file that is not a model it can run
ORT_ERRORS = (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph,
              ort_errors.NoSuchFile, ort_errors.InvalidArgument)  # fmt: skip


class OnnxLM:
    """A character language model exported by rnnlab: its two sessions and its metadata."""

    def __init__(self, path: Path) -> None:
        first = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = first.get_modelmeta().custom_metadata_map
        if meta.get("rnnlab.task") != "lm":
            found = meta.get("rnnlab.task", "no rnnlab model")
            raise ValueError(f"{path} is not an rnnlab language model ({found})")
        files = json.loads(meta["rnnlab.files"])
        self.sequence = self._session(path.with_name(files["sequence"]), first, path)
        self.step_session = self._session(path.with_name(files["step"]), first, path)
        self.state = json.loads(meta["rnnlab.state"])
        vocab = json.loads(meta["rnnlab.vocabs"])["tokens"]
        self.itos: list[str] = vocab["tokens"]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.tokenizer = json.loads(meta.get("rnnlab.data", "{}")).get("tokenizer", "chars")
        if self.tokenizer != "chars":
            raise ValueError(f"{path}: this example reads character models, not {self.tokenizer}")

    @staticmethod
    def _session(
        path: Path, opened: onnxruntime.InferenceSession, opened_path: Path
    ) -> onnxruntime.InferenceSession:
        if path.resolve() == opened_path.resolve():
            return opened
        if not path.is_file():
            raise ValueError(f"{path} is missing: export writes it beside {opened_path.name}")
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        if unknown:
            raise ValueError(
                f"the prime holds characters the model never saw: {''.join(unknown)!r}"
            )
        return np.array([self.stoi[ch] for ch in text], dtype=np.int64)

    def _run(
        self, session: onnxruntime.InferenceSession, tokens: np.ndarray, state: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        feed = {"tokens": tokens, **dict(zip(self.state["inputs"], state))}
        logits, *state = session.run(["logits", *self.state["outputs"]], feed)
        return logits, state

    def generate(
        self,
        prime: np.ndarray,
        length: int,
        temperature: float,
        top_k: int | None,
        rng: np.random.Generator,
    ) -> Iterator[int]:
        """Yield ``length`` token ids continuing ``prime`` (P,), as ``RNNLM.generate`` does."""
        L, _, H = self.state["shape"]  # (L*K, N, H)
        dtype = np.dtype(self.state["dtype"])
        zeros = [np.zeros((L, 1, H), dtype=dtype) for _ in self.state["inputs"]]  # a fresh state
        logits, state = self._run(self.sequence, prime[None, :], zeros)
        logits = logits[:, -1]  # (1, V): the scores after the prime's last token
        for i in range(length):
            token = draw(logits[0], temperature, top_k, rng)
            yield token
            if i + 1 < length:
                logits, state = self._run(self.step_session, np.array([token]), state)


def draw(
    logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator
) -> int:
    """One token from ``softmax(logits / temperature)`` among the ``top_k`` likeliest; the
    likeliest at temperature 0 (the first of equals, as torch's argmax)."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < len(z):
        z[z < np.sort(z)[-top_k]] = -np.inf
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Sample text from an exported rnnlab language model.")
    p.add_argument("model", type=Path, help="FILE.onnx written by rnnlab export")
    p.add_argument("--prime", help="text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (0.8)")
    p.add_argument("--top-k", type=int, help="sample among the K likeliest")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--seed", type=int, help="for a reproducible sample")
    args = p.parse_args(argv)
    try:
        if args.length < 0 or not args.temperature >= 0 or (args.top_k or 1) < 1:
            raise ValueError("--length and --temperature must be >= 0, --top-k >= 1")
        if not args.model.is_file():
            raise ValueError(f"no such file: {args.model}")
        model = OnnxLM(args.model)
        default = "\n" if "\n" in model.stoi else model.itos[-1]
        prime = default if args.prime is None else args.prime
        if not prime:
            raise ValueError("--prime is empty: give at least one character, or leave it out")
        ids = model.encode(prime)
    except (ValueError, KeyError, OSError, *ORT_ERRORS) as exc:
        print(f"onnx_sample: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    temperature = 0.0 if args.greedy else args.temperature
    sys.stdout.write(prime)
    rng = np.random.default_rng(args.seed)
    for token in model.generate(ids, args.length, temperature, args.top_k, rng):
        sys.stdout.write(model.itos[token])
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _one_line(exc: Any) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())

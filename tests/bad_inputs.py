"""The catalogue of bad inputs tried against the command line (see tests/test_bad_inputs.py).

Each :class:`Case` is one bad input: the argv (``{d}`` stands for the case's own folder), the
files it needs there (text, bytes, a copy of one of the small checkpoints of
``tests/fixtures/v0_1_0``, a tiny trained run, or a function that writes them), the exit code and
a fragment of the one-line message expected. :func:`run_case` runs one through
``rnnlab.cli.main`` in this process; :func:`render_table` turns the results into the table of
docs/RELIABILITY.md (paths shown as ``TMP``), which the test keeps equal to the code's messages.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "v0_1_0"
DOC = ROOT / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"


@dataclass(frozen=True)
class Fixture:
    """A copy of ``tests/fixtures/v0_1_0/NAME`` (a checkpoint, or a data file)."""

    name: str


@dataclass(frozen=True)
class Trained:
    """A copy of the tiny language-model run trained once per test module."""


Content = str | bytes | Fixture | Trained | Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: ``rnnlab ARGV`` must exit ``code`` with one line containing ``expect``."""

    name: str
    kind: str
    argv: str
    expect: str
    files: dict[str, Content] = field(default_factory=dict)
    code: int = 2
    read_only: bool = False  # the case folder's ``ro/`` is on a read-only file system

    def args(self, folder: Path) -> list[str]:
        return [a.replace("{d}", str(folder)) for a in shlex.split(self.argv)]

    @property
    def command(self) -> str:
        """The first word(s) of ``rnnlab ...``: the command (and the task for ``train``)."""
        words = shlex.split(self.argv)
        if not words:
            return ""
        return " ".join(words[:2]) if words[0] in ("train", "data") else words[0]


@dataclass(frozen=True)
class Result:
    code: int | str | None
    stdout: str
    stderr: str


# -- files ---------------------------------------------------------------------------------------
def _meta_edit(fixture: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A copy of checkpoint ``fixture`` whose ``best/meta.json`` is changed by ``change``."""

    def write(path: Path) -> None:
        shutil.copytree(FIXTURES / fixture, path)
        meta_path = path / "best" / "meta.json"
        data = json.loads(meta_path.read_text(encoding="utf-8"))
        change(data)
        meta_path.write_text(json.dumps(data), encoding="utf-8")

    return write


def _model_config(key: str, value: object) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        data["meta"]["model_config"][key] = value

    return change


def _truncate(fixture: str, name: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        shutil.copytree(FIXTURES / fixture, path)
        target = path / "best" / name
        target.write_bytes(target.read_bytes()[:100])

    return write


def _image(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from PIL import Image

        Image.new("RGB", (size, size), (200, 30, 30)).save(path)

    return write


def _folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


BINARY = bytes(range(128, 256)) * 4  # not UTF-8
SMALL = Fixture("small.txt")
TSV_TWO = "ab\tx\ncd\ty\nef\tx\ngh\ty\n" * 10

# fmt: off
CASES: list[Case] = [
    # -- the command line itself
    Case("no-command", "option", "", "required: COMMAND"),
    Case("unknown-command", "name", "nosuch", "invalid choice: 'nosuch'"),
    Case("unknown-option", "option", "train lm --no-such-option", "unrecognized arguments"),
    Case("train-no-task", "option", "train", "required: TASK"),
    Case("unknown-task", "name", "train nosuch", "invalid choice: 'nosuch'"),
    Case("unknown-converter", "name", "data nosuch", "invalid choice: 'nosuch'"),
    # -- numbers
    Case("seed-overflow", "number", "train lm --seed 100000000000000000000", "[0, 2**63)"),
    Case("seed-negative", "number", "train lm --seed -1", "[0, 2**63)"),
    Case("hidden-zero", "number", "train tag --hidden 0", "expected a value > 0"),
    Case("hidden-huge", "number", "train lm --hidden 1000000", "more than the limit"),
    Case("hidden-huge-classify", "number", "train classify --hidden 200000",
         "more than the limit"),
    Case("layers-huge", "number", "train lm --layers 100000", "[1, 64]"),
    Case("embedding-huge", "number",
         "train lm --data {d}/small.txt --embedding 100000000000 --hidden 8 --out {d}/run",
         "the lm model has 8,400,000,001,364 parameters", {"small.txt": SMALL}),
    Case("embedding-huge-seq2seq", "number",
         "train seq2seq --synthetic reverse --embedding 10000000000 --hidden 8 --out {d}/run",
         "the seq2seq model has"),
    Case("lr-text", "type", "train lm --lr fast", "expected a number, got 'fast'"),
    Case("lr-nan", "number", "train lm --lr nan", "expected a number, got 'nan'"),
    Case("lr-negative", "number", "train names --lr -1", "expected a value in (0, 1e38]"),
    Case("dropout-one", "number", "train lm --dropout 1", "in [0, 1)"),
    Case("weight-drop-above-one", "number", "train lm --weight-drop 1.5", "in [0, 1)"),
    Case("weight-drop-minimal-cell", "contradiction", "train lm --cell mingru --weight-drop 0.3",
         "--weight-drop needs recurrent weights; mingru has none"),
    Case("zoneout-cell-gru", "contradiction", "train tag --cell gru --zoneout-cell 0.1",
         "--zoneout-cell is for the LSTM's cell state"),
    Case("embedding-dropout-one-hot", "contradiction",
         "train lm --embedding 0 --embedding-dropout 0.1", "needs an embedding"),
    Case("ar-negative", "number", "train lm --ar -1", ">= 0"),
    Case("val-fraction-above-one", "number", "train lm --val-fraction 1.5", "in (0, 1)"),
    Case("time-budget-garbage", "type", "train classify --time-budget 5x", "invalid duration"),
    Case("batch-huge", "number",
         "train lm --data {d}/small.txt --batch 100000000000000 --hidden 8 --out {d}/run",
         "corpus too short", {"small.txt": SMALL}),
    Case("threads-huge", "number", "train lm --threads 100000000000", "[1, 1024]"),
    Case("hidden-float", "type", "train lm --hidden 1.5", "expected an integer, got '1.5'"),
    # -- names
    Case("cell-unknown", "name", "train classify --cell foo", "unknown cell 'foo'"),
    Case("backend-unknown", "name", "train lm --backend foo", "invalid choice: 'foo'"),
    Case("optimizer-unknown", "name", "train lm --optimizer foo", "invalid choice: 'foo'"),
    Case("synthetic-unknown", "name", "train seq2seq --synthetic foo", "invalid choice: 'foo'"),
    Case("experiment-unknown", "name", "experiment nosuch", "invalid choice: 'nosuch'"),
    Case("bench-model-unknown", "name", "bench --quick --models nosuch", "unknown model(s)"),
    Case("captions-split-unknown", "name", "data captions --out {d}/x --split nosuch",
         "invalid choice: 'nosuch'"),
    Case("device-unknown", "name", "train lm --device tpu", "unknown device 'tpu'"),
    Case("device-garbage", "name", "sample {d}/lm --device cuda:x", "unknown device 'cuda:x'",
         {"lm": Fixture("lm")}),
    # -- devices (run as on a machine without a GPU)
    Case("train-cuda", "option", "train lm --device cuda --data {d}/small.txt",
         "CUDA is not available", {"small.txt": SMALL}),
    Case("sample-cuda", "option", "sample {d}/lm --device cuda", "CUDA is not available",
         {"lm": Fixture("lm")}),
    Case("eval-cuda", "option", "eval {d}/lm --device cuda", "CUDA is not available",
         {"lm": Fixture("lm")}),
    Case("predict-cuda", "option", "predict {d}/c Smith --device cuda", "CUDA is not available",
         {"c": Fixture("classify")}),
    Case("tag-cuda", "option", "tag {d}/t 'my lord' --device cuda", "CUDA is not available",
         {"t": Fixture("tag")}),
    Case("translate-cuda", "option", "translate {d}/s 'i am .' --device cuda",
         "CUDA is not available", {"s": Fixture("seq2seq")}),
    Case("generate-names-cuda", "option", "generate-names {d}/n --language Russian --device cuda",
         "CUDA is not available", {"n": Fixture("names")}),
    Case("caption-cuda", "option", "caption {d}/c {d}/im.png --device cuda",
         "CUDA is not available", {"c": Fixture("caption"), "im.png": _image(36)}),
    Case("viz-checkpoint-missing", "checkpoint", "viz {d}/none", "none"),
    Case("viz-port-out-of-range", "number", "viz {d}/lm --port 70000", "[0, 65535]",
         {"lm": Fixture("lm")}),
    Case("viz-static-is-a-folder", "file", "viz {d}/lm --static {d}", "is a directory",
         {"lm": Fixture("lm")}),
    Case("diagnose-cuda", "option", "diagnose {d}/lm --device cuda", "CUDA is not available",
         {"lm": Fixture("lm")}),
    Case("precision-unknown", "name", "train lm --precision fp16", "invalid choice: 'fp16'"),
    Case("sample-precision-unknown", "name", "sample {d}/lm --precision half",
         "invalid choice: 'half'", {"lm": Fixture("lm")}),
    # -- the "use" commands
    Case("sample-prime-empty", "option", "sample {d}/lm --prime ''", "--prime is empty",
         {"lm": Fixture("lm")}),
    Case("sample-top-k-above-vocab", "number", "sample {d}/lm --top-k 1000",
         "more than the vocabulary's 52 tokens", {"lm": Fixture("lm")}),
    Case("sample-temperature-negative", "number", "sample {d}/lm --temperature -1",
         "expected a value >= 0", {"lm": Fixture("lm")}),
    Case("sample-seed-overflow", "number", "sample {d}/lm --seed 100000000000000000000",
         "[0, 2**63)", {"lm": Fixture("lm")}),
    Case("sample-length-text", "type", "sample {d}/lm --length ten", "expected an integer",
         {"lm": Fixture("lm")}),
    Case("predict-no-known-character", "data", "predict {d}/c '@@@@'",
         "has no character the model knows", {"c": Fixture("classify")}),
    Case("predict-empty-text", "data", "predict {d}/c '  '", "cannot classify an empty text",
         {"c": Fixture("classify")}),
    Case("predict-top-zero", "number", "predict {d}/c Smith --top 0", "expected a value > 0",
         {"c": Fixture("classify")}),
    Case("tag-no-words", "data", "tag {d}/t '  '", "no words to tag", {"t": Fixture("tag")}),
    Case("translate-nbest-above-beam", "contradiction", "translate {d}/s 'i am .' --nbest 3 "
         "--beam 2", "--nbest 3 is more than --beam 2", {"s": Fixture("seq2seq")}),
    Case("translate-empty", "data", "translate {d}/s ' '", "nothing to translate",
         {"s": Fixture("seq2seq")}),
    Case("translate-beam-zero", "number", "translate {d}/s 'i am .' --beam 0",
         "expected a value > 0", {"s": Fixture("seq2seq")}),
    Case("generate-names-n-zero", "number", "generate-names {d}/n --language Russian -n 0",
         "expected a value > 0", {"n": Fixture("names")}),
    Case("generate-names-n-huge", "number",
         "generate-names {d}/n --language Russian -n 1000000000000",
         "more than 100,000 names at once", {"n": Fixture("names")}),
    Case("generate-names-no-language", "option", "generate-names {d}/n", "needs --language",
         {"n": Fixture("names")}),
    Case("generate-names-unknown-language", "name", "generate-names {d}/n --language Klingon",
         "unknown language 'Klingon'", {"n": Fixture("names")}),
    Case("generate-names-start-unknown", "data",
         "generate-names {d}/n --language Russian --start '@@'", "never saw",
         {"n": Fixture("names")}),
    Case("generate-names-start-too-long", "contradiction",
         "generate-names {d}/n --language Russian --start Abc --max-len 2",
         "longer than --max-len 2", {"n": Fixture("names")}),
    Case("caption-temperature-nan", "number", "caption {d}/c {d}/im.png --temperature nan",
         "expected a number, got 'nan'", {"c": Fixture("caption"), "im.png": _image(36)}),
    Case("caption-image-missing", "file", "caption {d}/c {d}/none.png", "no such image",
         {"c": Fixture("caption")}),
    Case("caption-image-is-text", "file", "caption {d}/c {d}/im.png", "im.png",
         {"c": Fixture("caption"), "im.png": "not an image\n"}),
    Case("caption-image-is-folder", "file", "caption {d}/c {d}/im.png", "no such image",
         {"c": Fixture("caption"), "im.png": _folder}),
    Case("caption-image-wrong-size", "data", "caption {d}/c {d}/im.png", "im.png",
         {"c": Fixture("caption"), "im.png": _image(50)}),
    # -- checkpoints
    Case("checkpoint-missing", "checkpoint", "sample {d}/none", "none",),
    Case("checkpoint-empty-folder", "checkpoint", "sample {d}/empty", "empty",
         {"empty": _folder}),
    Case("checkpoint-is-text-file", "checkpoint", "sample {d}/notes.txt", "notes.txt",
         {"notes.txt": "hello\n"}),
    Case("checkpoint-foreign-task", "checkpoint", "sample {d}/c",
         "is a 'classify' checkpoint, not lm", {"c": Fixture("classify")}),
    Case("checkpoint-foreign-predict", "checkpoint", "predict {d}/lm Smith",
         "is a 'lm' checkpoint, not classify", {"lm": Fixture("lm")}),
    Case("checkpoint-meta-garbage", "checkpoint", "sample {d}/lm", "meta.json",
         {"lm": Fixture("lm"), "lm/best/meta.json": "{not json"}),
    Case("checkpoint-weights-truncated", "checkpoint", "sample {d}/lm", "model.safetensors",
         {"lm": _truncate("lm", "model.safetensors")}),
    Case("checkpoint-meta-hidden-huge", "checkpoint", "sample {d}/lm", "more than the limit",
         {"lm": _meta_edit("lm", _model_config("hidden_size", 200000))}),
    Case("checkpoint-meta-embedding-huge", "checkpoint", "translate {d}/s hello",
         "more than the limit",
         {"s": _meta_edit("seq2seq", _model_config("embed_dim", 10**10))}),
    Case("checkpoint-meta-hidden-text", "checkpoint", "sample {d}/lm", "hidden_size",
         {"lm": _meta_edit("lm", _model_config("hidden_size", "big"))}),
    Case("diagnose-checkpoint-missing", "checkpoint", "diagnose {d}/none", "none"),
    Case("diagnose-unsupported-task", "checkpoint", "diagnose {d}/n", "diagnose has no batch",
         {"n": Fixture("names")}),
    # -- data files
    Case("lm-data-missing", "file", "train lm --data {d}/none.txt", "none.txt"),
    Case("lm-data-empty", "file", "train lm --data {d}/empty.txt", "empty.txt",
         {"empty.txt": ""}),
    Case("lm-data-folder", "file", "train lm --data {d}/folder", "folder", {"folder": _folder}),
    Case("lm-data-binary", "file", "train lm --data {d}/bytes.bin", "bytes.bin",
         {"bytes.bin": BINARY}),
    Case("lm-data-too-short", "data", "train lm --data {d}/short.txt --val-fraction 0.1",
         "short.txt: the validation part", {"short.txt": "ab"}),
    Case("eval-data-missing", "file", "eval {d}/lm --data {d}/none.txt", "none.txt",
         {"lm": Fixture("lm")}),
    Case("eval-val-fraction-zero", "number", "eval {d}/lm --val-fraction 0", "in (0, 1)",
         {"lm": Fixture("lm")}),
    Case("classify-tsv-one-field", "data", "train classify --data {d}/x.tsv", "x.tsv:1",
         {"x.tsv": "just text\n"}),
    Case("classify-one-class", "data", "train classify --data {d}/x.tsv",
         "need at least 2 classes", {"x.tsv": "ab\tx\ncd\tx\n"}),
    Case("classify-empty-folder", "file", "train classify --data {d}/folder", "folder",
         {"folder": _folder}),
    Case("classify-tsv-binary", "file", "train classify --data {d}/x.tsv", "x.tsv",
         {"x.tsv": BINARY}),
    Case("seq2seq-data-and-synthetic", "contradiction",
         "train seq2seq --data {d}/p.tsv --synthetic reverse", "contradict each other",
         {"p.tsv": "a\tb\n"}),
    Case("seq2seq-tsv-one-column", "data", "train seq2seq --data {d}/p.tsv", "p.tsv",
         {"p.tsv": "only one column\n" * 20}),
    Case("tag-conll-no-tag", "data", "train tag --data {d}/x.conll", "x.conll",
         {"x.conll": "token-without-tag\n\n"}),
    Case("names-data-is-file", "file", "train names --data {d}/x.txt", "x.txt",
         {"x.txt": "Smith\n"}),
    Case("caption-data-no-index", "file", "train caption --data {d}/folder", "no captions.tsv",
         {"folder": _folder}),
    Case("diagnose-data-too-short", "data", "diagnose {d}/lm --data {d}/short.txt",
         "short.txt", {"lm": Fixture("lm"), "short.txt": "abc abc\n"}),
    # -- config files
    Case("config-missing", "file", "train lm --config {d}/none.json", "does not exist"),
    Case("config-folder", "file", "train lm --config {d}/folder", "is a directory",
         {"folder": _folder}),
    Case("config-not-json", "data", "train lm --config {d}/c.json", "is not valid JSON",
         {"c.json": "{nope"}),
    Case("config-binary", "file", "train lm --config {d}/c.json", "is not UTF-8 text",
         {"c.json": BINARY}),
    Case("config-a-list", "data", "train lm --config {d}/c.json", "must hold a mapping",
         {"c.json": "[1, 2]"}),
    Case("config-unknown-option", "data", "train lm --config {d}/c.json",
         "unknown option 'nosuch'", {"c.json": '{"nosuch": 1}'}),
    Case("config-wrong-type", "data", "train lm --config {d}/c.json", "lr must be a number",
         {"c.json": '{"train": {"lr": "fast"}}'}),
    Case("config-other-task", "contradiction", "train lm --config {d}/c.json",
         "is a config for task 'classify'", {"c.json": '{"task": "classify"}'}),
    Case("config-yaml-broken", "data", "train lm --config {d}/c.yaml", "is not valid YAML",
         {"c.yaml": "a: [1, 2\n"}),
    Case("config-hidden-huge", "number", "train lm --config {d}/c.json", "more than the limit",
         {"c.json": '{"model": {"rnn": {"hidden_size": 200000}}}'}),
    # -- run directories
    Case("out-under-file", "file", "train lm --data {d}/small.txt --out {d}/file/run",
         "is a file, not a directory", {"small.txt": SMALL, "file": "x"}),
    Case("out-is-file", "file", "train lm --data {d}/small.txt --out {d}/file",
         "is a file, not a directory", {"small.txt": SMALL, "file": "x"}),
    Case("out-read-only", "file", "train lm --data {d}/small.txt --out {d}/ro/run",
         "(a read-only file system)", {"small.txt": SMALL, "ro/x": "x"}, read_only=True),
    Case("resume-read-only", "file", "train lm --resume --out {d}/ro/run",
         "(a read-only file system)", {"ro/run": Trained()}, read_only=True),
    Case("resume-without-out", "contradiction", "train lm --resume", "--resume needs --out"),
    Case("resume-and-overwrite", "contradiction", "train lm --resume --overwrite --out {d}/run",
         "contradict each other", {"run": Trained()}),
    Case("resume-nothing", "checkpoint", "train lm --resume --out {d}/empty", "empty",
         {"empty": _folder}),
    Case("resume-other-hidden", "contradiction", "train lm --resume --out {d}/run --hidden 16",
         "hidden_size: 8 in checkpoint, 16 now", {"run": Trained()}),
    Case("resume-version-0.1.0", "checkpoint", "train lm --resume --out {d}/lm",
         "written by rnnlab 0.1.0", {"lm": Fixture("lm")}),
    Case("out-holds-run", "option", "train lm --out {d}/run", "already holds a run",
         {"run": Trained()}),
    # -- converters
    Case("captions-out-existing-file", "file", "data captions --out {d}/file",
         "is a file, not a folder", {"file": "x"}),
    Case("captions-no-out", "option", "data captions", "needs --out DIR"),
    Case("captions-n-zero", "number", "data captions --out {d}/x -n 0", "expected a value > 0"),
    Case("captions-out-read-only", "file", "data captions --out {d}/ro/x",
         "(a read-only file system)", {"ro/y": "x"}, read_only=True),
    Case("punct-tags-out-under-file", "file", "data punct-tags --out {d}/file/x.conll",
         "is a file, not a directory", {"file": "x"}),
    Case("punct-tags-out-is-folder", "file", "data punct-tags --out {d}/folder",
         "is a directory, not a file", {"folder": _folder}),
    Case("punct-tags-no-out", "option", "data punct-tags", "needs --out FILE"),
    Case("punct-tags-data-missing", "file", "data punct-tags --data {d}/none.txt --out {d}/x",
         "none.txt"),
    Case("punct-tags-out-read-only", "file", "data punct-tags --out {d}/ro/x.conll",
         "(a read-only file system)", {"ro/y": "x"}, read_only=True),
    # -- analysis
    Case("bench-grid-garbage", "type", "bench --grid abc", "expected BATCH,TIME,HIDDEN"),
    Case("bench-grid-zero", "number", "bench --grid 0,10,10", "expected BATCH,TIME,HIDDEN"),
    Case("bench-repeats-zero", "number", "bench --repeats 0", "expected a value >= 1"),
    Case("bench-json-under-file", "file", "bench --quick --json {d}/file/b.json",
         "is a file, not a directory", {"file": "x"}),
    Case("experiment-out-under-file", "file", "experiment latch --setting test --out {d}/file/e",
         "is a file, not a directory", {"file": "x"}),
    Case("experiment-seeds-zero", "number", "experiment latch --seeds 0", "expected a value >= 1"),
    Case("experiment-threads-huge", "number", "experiment latch --threads 100000", "[1, 1024]"),
    Case("experiment-jobs-zero", "number", "experiment latch --jobs 0", "expected a value >= 1"),
    Case("experiment-jobs-one-process", "contradiction", "experiment clipping --jobs 2 --out "
         "{d}/c", "clipping runs in one process; --jobs works for latch"),
    Case("diagnose-out-under-file", "file", "diagnose {d}/lm --data {d}/small.txt --out "
         "{d}/file/x", "is a file, not a directory",
         {"lm": Fixture("lm"), "small.txt": SMALL, "file": "x"}),
    Case("diagnose-read-only", "file", "diagnose {d}/ro/lm --data {d}/small.txt",
         "(a read-only file system)", {"ro/lm": Fixture("lm"), "small.txt": SMALL},
         read_only=True),
    Case("diagnose-length-one", "number", "diagnose {d}/lm --length 1", "expected a value >= 2",
         {"lm": Fixture("lm")}),
    # -- export
    Case("export-checkpoint-missing", "checkpoint", "export {d}/none --onnx {d}/m.onnx", "none"),
    Case("export-no-onnx", "option", "export {d}/lm", "needs --onnx FILE.onnx",
         {"lm": Fixture("lm")}),
    Case("export-onnx-not-onnx", "file", "export {d}/lm --onnx {d}/m.txt", "must end in .onnx",
         {"lm": Fixture("lm")}),
    Case("export-onnx-is-a-folder", "file", "export {d}/lm --onnx {d}/m.onnx",
         "is a directory, not a file", {"lm": Fixture("lm"), "m.onnx": _folder}),
    Case("export-step-is-a-folder", "file", "export {d}/lm --onnx {d}/m.onnx",
         "m-step.onnx is a directory, not a file", {"lm": Fixture("lm"), "m-step.onnx": _folder}),
    Case("export-onnx-under-file", "file", "export {d}/lm --onnx {d}/file/m.onnx",
         "is a file, not a directory", {"lm": Fixture("lm"), "file": "x"}),
    Case("export-read-only", "file", "export {d}/lm --onnx {d}/ro/m.onnx",
         "(a read-only file system)", {"lm": Fixture("lm"), "ro/x": "x"}, read_only=True),
]
# fmt: on


# -- running -------------------------------------------------------------------------------------
def make_files(case: Case, folder: Path, trained: Path | None) -> None:
    """Create ``case``'s files in ``folder`` (in the order given: later ones may edit a copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, content in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Fixture):
            source = FIXTURES / content.name
            if source.is_dir():
                shutil.copytree(source, path)
            else:
                shutil.copyfile(source, path)
        elif isinstance(content, Trained):
            assert trained is not None, "a Trained() case needs the trained run"
            shutil.copytree(trained, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            content(path)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make ``folder`` (already filled) read-only: a read-only tmpfs mounted over a copy of it
    where the machine allows mounting (root on Linux), else the write checks are told so
    (``os.access`` refuses writes under it and its file system reports read-only). Yields how."""
    from rnnlab.tasks import runner

    source = folder.with_name(folder.name + "-src")
    folder.rename(source)
    folder.mkdir()
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
            capture_output=True, check=False,
        )  # fmt: skip
        mounted = done.returncode == 0
    try:
        if mounted:
            shutil.copytree(source, folder, dirs_exist_ok=True)
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
            yield "mount"
        else:
            shutil.copytree(source, folder, dirs_exist_ok=True)
            real_access, real_read_only = os.access, runner._read_only
            inside = str(folder.resolve())

            def is_inside(path: object) -> bool:
                return str(Path(str(path)).resolve()).startswith(inside)

            def access(path: object, mode: int, **kw: object) -> bool:
                if mode & os.W_OK and is_inside(path):
                    return False
                return real_access(path, mode, **kw)  # type: ignore[arg-type]

            os.access = access  # type: ignore[assignment]
            runner._read_only = lambda path: is_inside(path) or real_read_only(path)
            try:
                yield "injected"
            finally:
                os.access = real_access
                runner._read_only = real_read_only
    finally:
        if mounted:
            done = subprocess.run(["umount", str(folder)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def run_case(case: Case, folder: Path, trained: Path | None = None) -> Result:
    """Run ``rnnlab ARGV`` of ``case`` in this process, in ``folder``; its exit code and output.

    A raised exception (not ``SystemExit``) is recorded as code ``"traceback"`` with its
    traceback as stderr."""
    from rnnlab.cli import main

    make_files(case, folder, trained)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        if case.read_only:
            stack.enter_context(read_only(folder / "ro"))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code: int | str | None
            try:
                code = main(case.args(folder))
            except SystemExit as exc:
                code = exc.code
            except BaseException:  # recorded: the test fails on it
                code = "traceback"
                err.write(traceback.format_exc())
    return Result(code, out.getvalue(), err.getvalue())


def shown_message(stderr: str, folder: Path) -> str:
    """The error line with the case's folder shown as ``TMP`` (and the repository as ``REPO``)."""
    text = stderr.strip()
    for path, name in ((folder.resolve(), "TMP"), (folder, "TMP"), (ROOT, "REPO")):
        text = text.replace(str(path), name)
    return text


def render_table(rows: list[tuple[Case, int | str | None, str]]) -> str:
    """The markdown table of docs/RELIABILITY.md: case, kind, command, exit code, message."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| # | case | kind | command | exit | message |",
        "|---|------|------|---------|------|---------|",
    ]
    for i, (case, code, message) in enumerate(rows, 1):
        argv = case.argv.replace("{d}", "TMP")
        lines.append(
            f"| {i} | {case.name} | {case.kind} | `{cell('rnnlab ' + argv)}` | {code} | "
            f"{cell(message)} |"
        )
    return "\n".join(lines)


def doc_table(doc: str) -> str:
    """The table between the markers of ``doc`` (without the blank lines around it)."""
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[start:end].strip("\n")


def replace_table(doc: str, table: str) -> str:
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[:start] + "\n" + table + "\n" + doc[end:]

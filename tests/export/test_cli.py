"""``rnnlab export RUN --onnx FILE.onnx`` and examples/onnx_sample.py: a trained language model
leaves rnnlab, and onnxruntime alone writes exactly the greedy text ``rnnlab sample --greedy``
writes.

The example runs in a fresh interpreter, which also reports whether anything imported torch or
rnnlab (nothing may).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from torch import nn

from rnnlab import register_task
from rnnlab.cli import main
from rnnlab.tasks import TASKS
from rnnlab.tasks.classify.config import ClassifierConfig
from rnnlab.train.checkpoint import save_checkpoint
from tests.fixtures.digits_task import DigitsTask
from tests.tasks.helpers import FIXTURES, RNNLAB_ERROR, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "onnx_sample.py"
#: ``python -c DRIVER EXAMPLE ARGS``: runs EXAMPLE with ARGS as a script, then reports on
#: stderr which of torch and rnnlab it imported
DRIVER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("IMPORTED", sorted(m for m in ("torch", "rnnlab") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny character model of the small Shakespeare text (1x16 LSTM, 40 steps)."""
    out = tmp_path_factory.mktemp("run") / "lm"
    argv = [
        "train", "lm", "--data", str(FIXTURES / "small.txt"), "--hidden", "16", "--layers", "1",
        "--embedding", "8", "--batch", "8", "--seq-len", "20", "--max-steps", "40",
        "--sample", "0", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(argv) == 0, err.getvalue()[-2000:]
    return out


@pytest.fixture(scope="module")
def exported(lm_run: Path) -> tuple[Path, str]:
    """``rnnlab export`` of the run (verified in onnxruntime): the file and what it printed."""
    path = lm_run.parent / "onnx" / "shakespeare.onnx"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["export", str(lm_run), "--onnx", str(path)]) == 0
    return path, out.getvalue()


def sample_onnx(*args: str) -> tuple[int, str, str]:
    """Run examples/onnx_sample.py ARGS in a fresh interpreter: exit code, stdout, stderr
    (without the import report, which must say that neither torch nor rnnlab was imported)."""
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(EXAMPLE), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    *err, report = done.stderr.splitlines() or [""]
    assert report == "IMPORTED []", done.stderr[-2000:]
    return done.returncode, done.stdout, "\n".join(err)


def rnnlab_sample(run_dir: Path, *args: str) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["sample", str(run_dir), *args]) == 0
    return out.getvalue()


# -- rnnlab export ------------------------------------------------------------------------------
def test_export_writes_the_sequence_and_the_step_and_verifies_them(
    exported: tuple[Path, str], lm_run: Path
) -> None:
    path, printed = exported
    step = path.with_name("shakespeare-step.onnx")
    lines = printed.splitlines()
    assert lines[0].startswith(f"wrote {path} (sequence: tokens, h_0, c_0 -> logits, h_n, c_n")
    assert lines[1].startswith(f"wrote {step} (step: tokens, h_0, c_0 -> logits, h_n, c_n")
    assert lines[2].startswith("verified in onnxruntime") and len(lines) == 3
    meta = {p.key: p.value for p in onnx.load(step).metadata_props}
    assert meta["rnnlab.task"] == "lm" and meta["rnnlab.role"] == "step"
    assert json.loads(meta["rnnlab.data"])["tokenizer"] == "chars"
    assert "source" not in json.loads(meta["rnnlab.data"])  # no local path leaves the machine
    stored = json.loads((lm_run / "best" / "meta.json").read_text())["meta"]["vocabs"]
    assert json.loads(meta["rnnlab.vocabs"]) == stored


def test_a_classifier_run_exports_one_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "classify"
    shutil.copytree(FIXTURES / "classify", run_dir)  # an rnnlab 0.1.0 checkpoint
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["export", str(run_dir), "--onnx", str(tmp_path / "c.onnx"), "--no-verify"])
    assert code == 0
    assert out.getvalue().startswith(f"wrote {tmp_path / 'c.onnx'} (sequence: tokens, lengths ->")
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["c.onnx"]
    meta = {p.key: p.value for p in onnx.load(tmp_path / "c.onnx").metadata_props}
    assert meta["rnnlab.task"] == "classify"
    assert json.loads(meta["rnnlab.files"]) == {"sequence": "c.onnx"}


class BagModel(nn.Module):
    """A model no exporter knows: mean of embeddings -> class scores."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.bag = nn.EmbeddingBag(config.vocab_size, config.num_classes)


class BagTask(DigitsTask):
    name = "bag"

    def model_from_meta(self, model_config: dict) -> nn.Module:
        return BagModel(ClassifierConfig.from_meta(model_config))


def test_a_task_that_cannot_be_exported_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_task(BagTask())
    try:
        config = ClassifierConfig(vocab_size=12, num_classes=10)
        meta = {"task": "bag", "model_config": config.to_meta(), "vocabs": {}}
        save_checkpoint(tmp_path / "run" / "best", BagModel(config), meta)
        code, _, err = run(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "b.onnx")],
                           capsys)  # fmt: skip
    finally:
        TASKS.pop("bag", None)
        from rnnlab import tasks

        tasks._LOADED.pop("bag", None)
    assert code == 2
    assert err.strip() == (
        f"{RNNLAB_ERROR} cannot export a BagModel to ONNX: rnnlab exports its task models (RNNLM, "
        "Classifier, Tagger, Seq2Seq, NameGenerator, Captioner)"
    )
    assert not list(tmp_path.glob("*.onnx"))


# -- examples/onnx_sample.py --------------------------------------------------------------------
@pytest.mark.parametrize("prime", [None, "First Citizen:\n", "W"])
def test_greedy_text_in_onnxruntime_equals_rnnlab_sample(
    exported: tuple[Path, str], lm_run: Path, prime: str | None
) -> None:
    path, _ = exported
    args = ["--greedy", "--length", "300", *(["--prime", prime] if prime is not None else [])]
    code, text, err = sample_onnx(str(path), *args)
    assert code == 0, err
    expected = rnnlab_sample(lm_run, *args)
    assert text == expected
    assert len(text) == len(prime or "\n") + 300 + 1


def test_sampled_text_is_reproducible_with_a_seed(exported: tuple[Path, str]) -> None:
    path, _ = exported
    vocab = set(json.loads(_meta(path)["rnnlab.vocabs"])["tokens"]["tokens"])
    texts = [
        sample_onnx(str(path), "--prime", "All:", "--length", "200", "--seed", seed)[1]
        for seed in ("3", "3", "4")
    ]
    assert texts[0] == texts[1] != texts[2]
    assert texts[0].startswith("All:") and set(texts[0][:-1]) <= vocab
    # top-1 sampling is greedy decoding, whatever the temperature and the seed
    top1 = sample_onnx(str(path), "--prime", "All:", "--length", "50", "--top-k", "1", "--seed",
                       "5", "--temperature", "2")[1]  # fmt: skip
    assert top1 == sample_onnx(str(path), "--prime", "All:", "--length", "50", "--greedy")[1]


def test_the_example_reports_bad_input_in_one_line(
    exported: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = exported
    code, out, err = sample_onnx(str(path), "--prime", "héllo")
    assert code == 2 and out == ""
    assert err == "onnx_sample: error: the prime holds characters the model never saw: 'é'"
    code, _, err = sample_onnx(str(tmp_path / "none.onnx"))
    assert code == 2 and err == f"onnx_sample: error: no such file: {tmp_path / 'none.onnx'}"
    step = path.with_name("shakespeare-step.onnx")
    alone = tmp_path / step.name
    shutil.copyfile(step, alone)  # the step file without its sequence file
    code, _, err = sample_onnx(str(alone))
    assert code == 2 and "shakespeare.onnx is missing" in err and len(err.splitlines()) == 1


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_export_help_imports_no_torch_and_shows_the_layout() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from rnnlab.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try: main(['export', '--help'])\n"
        "    except SystemExit as e: assert e.code == 0\n"
        "print(' '.join(out.getvalue().split()))\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    help_text, imported = done.stdout.strip().splitlines()
    assert imported == "False", done.stderr[-2000:]
    assert "FILE.onnx" in help_text and "FILE-step.onnx one decoding step" in help_text

"""ONNX export of the task models (rnnlab.export.to_onnx), run in onnxruntime against eager.

Each model is trained a few steps (weights away from their initialisation), exported once, and
run in onnxruntime at batch 1 and more, length 1, shorter and longer than the example it was
traced at: outputs and states within 1e-5 of PyTorch (float32). The decoders' step graphs are
checked against the models' own step methods, and the encoder-decoder's whole greedy decoding
in onnxruntime against ``Seq2Seq.greedy``.

Every export here runs in this one process, after two exports of ``torch.nn.GRU`` (whose second
export torch 2.13 fixes to the example's length): rnnlab's layers never reach torch's GRU or
LSTM decomposition under export, so a graph exported later in the same process stays dynamic,
which every test here would show otherwise. ``to_onnx`` therefore exports in-process.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import Tensor, nn

from rnnlab.core.registry import RecurrentConfig
from rnnlab.core.state import state_parts
from rnnlab.data.vocab import Vocab
from rnnlab.errors import RnnlabError
from rnnlab.export import EXAMPLE_T, to_onnx
from rnnlab.tasks.caption.model import Captioner, CaptionerConfig
from rnnlab.tasks.classify.model import Classifier, ClassifierConfig
from rnnlab.tasks.lm.model import RNNLM, LMConfig
from rnnlab.tasks.names.model import NameGenerator, NameGeneratorConfig
from rnnlab.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig
from rnnlab.tasks.tag.model import Tagger, TaggerConfig
from tests.tasks.helpers import fit, pad, ragged

TOL = 1e-5
#: (batch, time) each graph is run at: batch 1 and more, length 1, below and above the example
SIZES = ((1, 1), (2, 4), (3, EXAMPLE_T + 6))
V = 11


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def after_torch_gru_exports() -> None:
    """Two exports of torch.nn.GRU first (see the module docstring)."""

    class GRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 4, batch_first=True)

        def forward(self, x: Tensor) -> Tensor:
            return self.gru(x)[0]

    for _ in range(2):
        N, T = torch.export.Dim("N"), torch.export.Dim("T")
        with warnings.catch_warnings():  # torch's own, about torch.nn.GRU's flat weights
            warnings.simplefilter("ignore")
            torch.onnx.export(
                GRU(), (torch.randn(2, 5, 3),), dynamo=True, dynamic_shapes=({0: N, 1: T},),
                verbose=False,
            )  # fmt: skip


def _exported(
    factory: Callable[[], tuple[nn.Module, tuple]], name: str, tmp: pytest.TempPathFactory
) -> tuple[nn.Module, list[Path]]:
    torch.manual_seed(0)
    model, batch = factory()
    fit(model, batch, steps=5)
    model.train()  # exported in eval mode, left in its own
    paths = to_onnx(model, tmp.mktemp(name) / f"{name}.onnx", vocabs=_VOCABS.get(name))
    assert model.training
    return model.eval(), paths


def _lm() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("lstm", 8, num_layers=2, dropout=0.3)
    model = RNNLM(LMConfig(vocab_size=V, embedding_size=6, rnn=rnn, io_dropout=0.3))
    x = torch.randint(V, (4, 9))
    return model, (x, x.roll(-1, 1))


def _classifier() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("minimal-gru", 8, bidirectional=True)  # a Scan, both ways
    model = Classifier(ClassifierConfig(vocab_size=V, num_classes=3, embed_dim=5, rnn=rnn))
    tokens, lengths = pad(ragged([5, 3, 7], V))
    return model, (tokens, lengths, torch.tensor([0, 2, 1]))


def _tagger() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("gru", 8, num_layers=2, bidirectional=True)  # ONNX GRU nodes
    model = Tagger(TaggerConfig(vocab_size=V, num_tags=4, embed_dim=5, rnn=rnn))
    tokens, lengths = pad(ragged([5, 3, 7], V))
    return model, (tokens, lengths, torch.randint(4, tokens.shape))


def _seq2seq() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("lstm", 8, bidirectional=True)  # the bridge merges the directions
    model = Seq2Seq(Seq2SeqConfig(V, 13, 6, rnn, attention="bahdanau"))
    src, src_lengths = pad(ragged([5, 3, 6], V))
    tgt = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 9, 9, 2, 0]])
    return model, (src, src_lengths, tgt, torch.tensor([5, 3, 4]))


def _names() -> tuple[nn.Module, tuple]:
    config = NameGeneratorConfig(vocab_size=V, num_languages=3, embed_dim=5, lang_dim=4)
    model = NameGenerator(config.replace(rnn=RecurrentConfig("elman", 8)))  # ONNX RNN nodes
    tokens, lengths = pad(ragged([5, 3, 6], V))
    return model, (torch.tensor([0, 2, 1]), tokens, lengths, tokens.roll(-1, 1))


def _captioner() -> tuple[nn.Module, tuple]:
    config = CaptionerConfig(vocab_size=V, image_size=8, channels=(4,), feature_dim=6)
    model = Captioner(config.replace(embed_dim=5, rnn=RecurrentConfig("lstm", 8)))
    tokens, lengths = pad(ragged([5, 3], V))
    return model, (torch.rand(2, 3, 8, 8), tokens, lengths, tokens.roll(-1, 1))


_CHARS = Vocab(list("abcdefghij\n"), pad=None, sos=None, eos=None, unk=None)
_VOCABS = {"lm": {"tokens": _CHARS}}


@pytest.fixture(scope="module")
def lm(after_torch_gru_exports: None, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _exported(_lm, "lm", tmp_path_factory)


@pytest.fixture(scope="module")
def classifier(after_torch_gru_exports: None, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _exported(_classifier, "classify", tmp_path_factory)


@pytest.fixture(scope="module")
def tagger(after_torch_gru_exports: None, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _exported(_tagger, "tag", tmp_path_factory)


@pytest.fixture(scope="module")
def seq2seq(after_torch_gru_exports: None, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _exported(_seq2seq, "seq2seq", tmp_path_factory)


@pytest.fixture(scope="module")
def names(after_torch_gru_exports: None, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _exported(_names, "names", tmp_path_factory)


@pytest.fixture(scope="module")
def captioner(after_torch_gru_exports: None, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _exported(_captioner, "caption", tmp_path_factory)


# -- helpers ------------------------------------------------------------------------------------
_SESSIONS: dict[Path, onnxruntime.InferenceSession] = {}


def ort_run(path: Path, **inputs: Tensor) -> dict[str, Tensor]:
    """The graph at ``path`` run in onnxruntime on ``inputs``: every output by name."""
    if path not in _SESSIONS:
        _SESSIONS[path] = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
    session = _SESSIONS[path]
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, {k: v.numpy() for k, v in inputs.items()})
    return {n: torch.from_numpy(o) for n, o in zip(names, outputs)}


def close(got: Tensor, want: Tensor) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


def state(n: int, *, layers: int, hidden: int = 8, lstm: bool) -> dict[str, Tensor]:
    parts = {"h_0": torch.randn(layers, n, hidden)}
    if lstm:
        parts["c_0"] = torch.randn(layers, n, hidden)
    return parts


def assert_state(out: dict[str, Tensor], final: object) -> None:
    for name, part in zip(("h_n", "c_n"), state_parts(final)):
        close(out[name], part)


def lengths_for(n: int, t: int) -> Tensor:
    """A padded batch: the first row full, the others shorter (never below 1)."""
    return torch.tensor([t] + [max(1, t - 2 - i) for i in range(n - 1)])


# -- the language model -------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "t"), SIZES)
def test_lm_sequence_equals_eager_with_a_state(lm: tuple, n: int, t: int) -> None:
    model, (sequence, _) = lm
    tokens, s = torch.randint(V, (n, t)), state(n, layers=2, lstm=True)
    out = ort_run(sequence, tokens=tokens, **s)
    with torch.no_grad():
        (logits, final), _ = model(tokens, state=(s["h_0"], s["c_0"]))
    close(out["logits"], logits)
    assert_state(out, final)


def test_lm_sequence_from_zeros_is_the_fresh_start(lm: tuple) -> None:
    model, (sequence, _) = lm
    tokens = torch.randint(V, (2, 5))
    zeros = {k: torch.zeros_like(v) for k, v in state(2, layers=2, lstm=True).items()}
    with torch.no_grad():
        (logits, _), _ = model(tokens)  # no state given
    close(ort_run(sequence, tokens=tokens, **zeros)["logits"], logits)


@pytest.mark.parametrize("n", [1, 4])
def test_lm_step_graph_reproduces_model_step(lm: tuple, n: int) -> None:
    model, (_, step) = lm
    tokens, s = torch.randint(V, (n,)), state(n, layers=2, lstm=True)
    out = ort_run(step, tokens=tokens, **s)
    with torch.no_grad():
        logits, final = model.step(tokens, (s["h_0"], s["c_0"]))
    close(out["logits"], logits)
    assert_state(out, final)


def test_lm_steps_continue_the_sequence(lm: tuple) -> None:
    """The sequence graph's state, fed to the step graph token by token, scores as the whole
    sequence does (what generation relies on)."""
    model, (sequence, step) = lm
    tokens = torch.randint(V, (2, 6))
    zeros = {k: torch.zeros_like(v) for k, v in state(2, layers=2, lstm=True).items()}
    out = ort_run(sequence, tokens=tokens[:, :3], **zeros)
    carried = {"h_0": out["h_n"], "c_0": out["c_n"]}
    for i in range(3, 6):
        out = ort_run(step, tokens=tokens[:, i], **carried)
        carried = {"h_0": out["h_n"], "c_0": out["c_n"]}
    with torch.no_grad():
        (logits, _), _ = model(tokens)
    close(out["logits"], logits[:, -1])


def test_lm_files_describe_themselves(lm: tuple) -> None:
    model, (sequence, step) = lm
    for path, role in ((sequence, "sequence"), (step, "step")):
        proto = onnx.load(path)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["rnnlab.task"] == "lm" and meta["rnnlab.role"] == role
        assert json.loads(meta["rnnlab.files"]) == {"sequence": "lm.onnx", "step": "lm-step.onnx"}
        assert json.loads(meta["rnnlab.state"]) == {
            "inputs": ["h_0", "c_0"], "outputs": ["h_n", "c_n"], "shape": [2, "N", 8],
            "dtype": "float32", "initial": "zeros",
        }  # fmt: skip
        assert Vocab.from_meta(json.loads(meta["rnnlab.vocabs"])["tokens"]).itos == _CHARS.itos
        assert LMConfig.from_meta(json.loads(meta["rnnlab.config"])) == model.config
        # the declared ports are the graph's own, with the dynamic axes named
        for ports, values in (("rnnlab.inputs", proto.graph.input),
                              ("rnnlab.outputs", proto.graph.output)):  # fmt: skip
            declared = [(p["name"], p["shape"]) for p in json.loads(meta[ports])]
            actual = [
                (v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values
            ]
            assert declared == actual
    assert json.loads(meta["rnnlab.inputs"])[0]["shape"] == ["N"]  # the step's tokens


def test_lm_layers_are_onnx_lstm_nodes_not_unrolled(lm: tuple) -> None:
    _, (sequence, _) = lm
    ops = [n.op_type for n in onnx.load(sequence).graph.node]
    assert ops.count("LSTM") == 2  # one per layer
    assert len(ops) < 100  # a loop unrolled over the example's 7 steps would be far longer


# -- the classifier and the tagger --------------------------------------------------------------
@pytest.mark.parametrize(("n", "t"), SIZES)
def test_classifier_with_lengths(classifier: tuple, n: int, t: int) -> None:
    model, (path,) = classifier
    tokens, lengths = torch.randint(1, V, (n, t)), lengths_for(n, t)
    out = ort_run(path, tokens=tokens, lengths=lengths)
    with torch.no_grad():
        close(out["logits"], model(tokens, lengths)[0])
    assert "Scan" in {node.op_type for node in onnx.load(path).graph.node}


def test_classifier_ignores_the_padding(classifier: tuple) -> None:
    """A padded row scores as the same row alone (both directions read only its valid part)."""
    _, (path,) = classifier
    row = torch.randint(1, V, (1, 4))
    padded = torch.cat([row, torch.randint(1, V, (1, 5))], dim=1)
    alone = ort_run(path, tokens=row, lengths=torch.tensor([4]))["logits"]
    close(ort_run(path, tokens=padded, lengths=torch.tensor([4]))["logits"], alone)


@pytest.mark.parametrize(("n", "t"), SIZES)
def test_tagger_with_lengths(tagger: tuple, n: int, t: int) -> None:
    model, (path,) = tagger
    tokens, lengths = torch.randint(1, V, (n, t)), lengths_for(n, t)
    out = ort_run(path, tokens=tokens, lengths=lengths)
    with torch.no_grad():
        close(out["logits"], model(tokens, lengths)[0])


# -- the encoder-decoder ------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "s"), SIZES)
def test_seq2seq_encoder_and_step(seq2seq: tuple, n: int, s: int) -> None:
    model, (encoder, step) = seq2seq
    src, src_lengths = torch.randint(1, V, (n, s)), lengths_for(n, s)
    enc = ort_run(encoder, src=src, src_lengths=src_lengths)
    with torch.no_grad():
        memory, initial = model.encode(src, src_lengths)
    close(enc["keys"], memory.keys)
    close(enc["projected"], memory.projected)
    assert torch.equal(enc["mask"], memory.mask)
    assert_state({"h_n": enc["h_0"], "c_n": enc["c_0"]}, initial)
    prev = torch.randint(3, 13, (n,))
    memory_in = {k: enc[k] for k in ("keys", "projected", "mask")}
    out = ort_run(step, prev=prev, h_0=enc["h_0"], c_0=enc["c_0"], **memory_in)
    with torch.no_grad():
        logits, final, weights = model.attending_step(prev, initial, memory)
    close(out["logits"], logits)
    close(out["attention"], weights)
    assert_state(out, final)


def test_seq2seq_greedy_decoding_in_onnxruntime_equals_the_model(seq2seq: tuple) -> None:
    model, (encoder, step) = seq2seq
    src, src_lengths = pad(ragged([6, 2, 4], V, seed=3))
    c = model.config
    enc = ort_run(encoder, src=src, src_lengths=src_lengths)
    carried = {k: enc[k] for k in ("h_0", "c_0")}
    memory = {k: enc[k] for k in ("keys", "projected", "mask")}
    prev, rows = torch.full((3,), c.sos_id), [[] for _ in range(3)]
    for _ in range(8):
        out = ort_run(step, prev=prev, **carried, **memory)
        logits = out["logits"]
        logits[:, [0, c.sos_id]] = -np.inf  # never <pad> or <sos>, as the model decodes
        prev = logits.argmax(dim=-1)
        for row, token in zip(rows, prev.tolist()):
            row.append(token)
        carried = {"h_0": out["h_n"], "c_0": out["c_n"]}
    decoded = [row[: row.index(c.eos_id)] if c.eos_id in row else row for row in rows]
    assert decoded == model.greedy(src, src_lengths, max_len=8)


def test_seq2seq_memory_roundtrips_through_the_step(seq2seq: tuple) -> None:
    """The step's memory inputs are exactly the encoder's outputs (names and layout)."""
    model, (encoder, step) = seq2seq
    enc_out = [o.name for o in onnx.load(encoder).graph.output]
    step_in = [i.name for i in onnx.load(step).graph.input]
    assert enc_out == ["keys", "projected", "mask", "h_0", "c_0"]
    assert step_in == ["prev", "h_0", "c_0", "keys", "projected", "mask"]
    meta = {p.key: p.value for p in onnx.load(step).metadata_props}
    assert json.loads(meta["rnnlab.state"])["initial"] == "encoder"
    assert json.loads(meta["rnnlab.decoding"]) == {"sos": 1, "eos": 2, "never": [0, 1]}
    assert Seq2SeqConfig.from_meta(json.loads(meta["rnnlab.config"])) == model.config


# -- the name generator and the captioner -------------------------------------------------------
@pytest.mark.parametrize(("n", "t"), SIZES)
def test_names_sequence_and_step(names: tuple, n: int, t: int) -> None:
    model, (sequence, step) = names
    languages = torch.randint(3, (n,))
    tokens, lengths = torch.randint(1, V, (n, t)), lengths_for(n, t)
    with torch.no_grad():
        close(ort_run(sequence, languages=languages, tokens=tokens, lengths=lengths)["logits"],
              model(languages, tokens, lengths)[0])  # fmt: skip
        s = state(n, layers=1, lstm=False)
        out = ort_run(step, languages=languages, tokens=tokens[:, 0], **s)
        logits, (_, final) = model.step(tokens[:, 0], (languages, s["h_0"]))
    close(out["logits"], logits)
    assert_state(out, final)


def test_names_step_from_zeros_starts_a_name(names: tuple) -> None:
    model, (_, step) = names
    languages, sos = torch.tensor([0, 2]), torch.full((2,), model.config.sos_id)
    out = ort_run(step, languages=languages, tokens=sos, h_0=torch.zeros(1, 2, 8))
    with torch.no_grad():
        logits, _ = model.step(sos, (languages, None))
    close(out["logits"], logits)


@pytest.mark.parametrize("n", [1, 3])
def test_captioner_encoder_and_step(captioner: tuple, n: int) -> None:
    model, (encoder, step) = captioner
    images = torch.rand(n, 3, 8, 8)
    enc = ort_run(encoder, images=images)
    with torch.no_grad():
        initial = model.initial_state(images)
    assert_state({"h_n": enc["h_0"], "c_n": enc["c_0"]}, initial)
    tokens = torch.randint(3, V, (n,))
    out = ort_run(step, tokens=tokens, h_0=enc["h_0"], c_0=enc["c_0"])
    with torch.no_grad():
        logits, final = model.step(tokens, initial)
    close(out["logits"], logits)
    assert_state(out, final)


# -- errors and writes --------------------------------------------------------------------------
def test_a_model_that_is_not_a_task_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RnnlabError, match="cannot export a Linear to ONNX") as info:
        to_onnx(nn.Linear(2, 2), tmp_path / "m.onnx")
    assert "\n" not in str(info.value)


def test_the_file_name_must_end_in_onnx(lm: tuple, tmp_path: Path) -> None:
    model, _ = lm
    with pytest.raises(RnnlabError, match=r"must end in \.onnx"):
        to_onnx(model, tmp_path / "m.txt")
    (tmp_path / "m-step.onnx").mkdir()
    with pytest.raises(RnnlabError, match="is a directory"):
        to_onnx(model, tmp_path / "m.onnx")


def test_files_are_written_only_after_every_graph_exported(
    lm: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing step export leaves the earlier files exactly as they were, and no temporary
    file behind."""
    import rnnlab.export as export

    model, (sequence, step) = lm
    before = {p: p.read_bytes() for p in (sequence, step)}

    def fake(model: nn.Module, graph: export.Graph) -> onnx.ModelProto:
        if graph.role == "step":
            raise RnnlabError("the step failed")
        return onnx.load(sequence)

    monkeypatch.setattr(export, "export_graph", fake)
    with pytest.raises(RnnlabError, match="the step failed"):
        to_onnx(model, sequence)
    assert {p: p.read_bytes() for p in (sequence, step)} == before
    assert sorted(p.name for p in sequence.parent.iterdir()) == ["lm-step.onnx", "lm.onnx"]

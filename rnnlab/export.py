"""Deploy a task model: ONNX files that run with onnxruntime alone, no rnnlab, no torch.

:func:`to_onnx` writes a trained task model as the graphs its use needs, with batch and time
dynamic (the recurrent layers become ONNX ``LSTM``/``GRU``/``RNN`` nodes or a ``Scan``, never a
loop unrolled to the example's length: :mod:`rnnlab.core.export`). A model that generates gets
two files, the whole-input graph ``FILE.onnx`` and one decoding step ``FILE-step.onnx``:

* language model: ``FILE.onnx`` reads whole sequences, tokens (N, T) and a state -> logits
  (N, T, V) and the state after them; ``FILE-step.onnx`` one step, tokens (N,) and a state ->
  logits (N, V) and the next state;
* classifier: ``FILE.onnx``, tokens (N, T) and lengths (N,) -> logits (N, C);
* tagger: ``FILE.onnx``, tokens (N, T) and lengths (N,) -> logits (N, T, C);
* encoder-decoder: ``FILE.onnx`` the encoder, source (N, S) and lengths (N,) -> the memory
  (``keys``, ``projected``, ``mask``, with attention) and the decoder's initial state;
  ``FILE-step.onnx`` one decoder step, the previous tokens (N,), a state and the memory ->
  logits (N, V), the next state and the attention weights (N, S);
* name generator: ``FILE.onnx``, languages (N,), tokens (N, T) and lengths (N,) -> logits
  (N, T, V); ``FILE-step.onnx``, languages (N,), tokens (N,) and a state -> logits (N, V) and
  the next state;
* captioner: ``FILE.onnx`` the image encoder, images (N, 3, S, S) -> the decoder's initial
  state; ``FILE-step.onnx``, tokens (N,) and a state -> logits (N, V) and the next state.

The state is ``h_0`` (L*K, N, H), and ``c_0`` for the LSTM; the graphs return it as ``h_n``
(``c_n``), to feed back as the next step's ``h_0`` (``c_0``). Zeros are the fresh state, what
the PyTorch model starts from when given none; an encoder's outputs ``h_0`` (``c_0``) start its
decoder. Every file describes itself in its ``metadata_props`` (:func:`metadata`): the task,
its role, its sibling files, the inputs and outputs with their shapes, the state, the
vocabularies, the tokenizer and the decoding ids, all as JSON, so that a program holding only
the files can use them (``examples/onnx_sample.py``). docs/DEPLOY.md has the details.

Shapes: N batch, T time, S source time, V vocabulary, C classes or tags, L layers,
K directions, H hidden size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rnnlab.core.layers import Recurrent
from rnnlab.core.state import State, state_parts
from rnnlab.data.vocab import Vocab
from rnnlab.errors import RnnlabError
from rnnlab.tasks.decoding import evaluating

if TYPE_CHECKING:
    import onnx

#: the layout version of the files' metadata (``rnnlab.format``)
FORMAT = 1
#: the suffix of each role's file after ``FILE`` (``FILE.onnx``, ``FILE-step.onnx``)
SUFFIXES = {"sequence": "", "encoder": "", "step": "-step"}
#: the example sizes the graphs are traced at (odd values, so that no size is taken for another)
EXAMPLE_N, EXAMPLE_T = 3, 7


@dataclass(frozen=True)
class Port:
    """One input or output of a graph.

    Attributes:
        name: its name in the ONNX graph.
        shape: each axis a size, or a symbol for a dynamic axis: "N", "T" or "S".
        dtype: the numpy name of its element type ("int64", "float32", "bool").
        doc: what it holds, one line.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    doc: str

    def to_meta(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "doc": self.doc}


@dataclass(frozen=True)
class Graph:
    """One file of an exported model: ``function(model, *inputs) -> outputs``.

    Attributes:
        role: "sequence", "encoder" or "step" (which file: :data:`SUFFIXES`).
        function: the model's computation, in eval mode, through the model's own methods.
        inputs, outputs: the ports, in the function's order.
        example: ``example(N, T)``, inputs of batch N and time T (or source time) for the
            function: what the graph is traced at, and what :func:`verify_onnx` runs.
        state: the state's input and output names (empty for a stateless graph).
        doc: one line, for the file's ``doc_string``.
    """

    role: str
    function: Callable[..., tuple[Tensor, ...]]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    example: Callable[[int, int], tuple[Tensor, ...]]
    doc: str
    state: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


class _Traced(nn.Module):
    """``function(model, *inputs)`` as a module that holds ``model`` (its weights are the
    graph's initialisers)."""

    def __init__(self, model: nn.Module, function: Callable[..., tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.model = model
        self.function = function

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.function(self.model, *inputs))


# -- the graphs of each task model --------------------------------------------------------------
def _dtype(model: nn.Module) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


@dataclass(frozen=True)
class _StatePorts:
    """A recurrent layer's state as ports: ``h_0`` (and ``c_0``) in, ``h_n`` (``c_n``) out,
    each (L*K, N, H)."""

    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    @classmethod
    def of(cls, rnn: Recurrent, dtype: str) -> _StatePorts:
        shape = (rnn.num_layers * rnn.num_directions, "N", rnn.hidden_size)
        parts = ("h", "c") if rnn.state_is_tuple else ("h",)
        return cls(
            tuple(Port(f"{p}_0", shape, dtype, f"the state's {p} before the input") for p in parts),
            tuple(Port(f"{p}_n", shape, dtype, f"the state's {p} after the input") for p in parts),
        )

    @property
    def names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``Graph.state`` of a graph that takes the state and returns it."""
        return tuple(p.name for p in self.inputs), tuple(p.name for p in self.outputs)

    @property
    def initial(self) -> tuple[Port, ...]:
        """The inputs as an encoder's outputs: the decoder's initial state."""
        return tuple(
            Port(p.name, p.shape, p.dtype, "the decoder's initial state") for p in self.inputs
        )

    def random(self, N: int, like: Tensor) -> tuple[Tensor, ...]:
        """A random state of batch N (an example: zeros would hide a state that is ignored)."""
        return tuple(
            torch.randn(*(N if s == "N" else s for s in p.shape), dtype=like.dtype) * 0.5
            for p in self.inputs
        )


def _as_state(parts: Sequence[Tensor]) -> State:
    return parts[0] if len(parts) == 1 else tuple(parts)


def _ids(high: int, *shape: int, low: int = 0) -> Tensor:
    return torch.randint(low, max(high, low + 1), shape)


def _lengths(N: int, T: int) -> Tensor:
    """(N,) lengths in [1, T], the first full (a padded batch)."""
    return torch.tensor([T] + [max(1, T - 1 - i) for i in range(N - 1)])


def _int_port(name: str, shape: tuple[int | str, ...], doc: str) -> Port:
    return Port(name, shape, "int64", doc)


def _lm_graphs(model: nn.Module) -> list[Graph]:
    c, dtype = model.config, _dtype(model)
    V = c.vocab_size
    state, weight = _StatePorts.of(model.rnn, dtype), model.decoder.weight

    def sequence(model: nn.Module, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        (logits, final), _ = model(tokens, state=_as_state(state))
        return (logits, *state_parts(final))

    def step(model: nn.Module, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, final = model.step(tokens, _as_state(state))
        return (logits, *state_parts(final))

    return [
        Graph(
            "sequence", sequence,
            (_int_port("tokens", ("N", "T"), "token ids"), *state.inputs),
            (Port("logits", ("N", "T", V), dtype, "next-token scores after each token"),
             *state.outputs),
            lambda N, T: (_ids(V, N, T), *state.random(N, weight)),
            "the language model over whole sequences", state.names,
        ),
        Graph(
            "step", step,
            (_int_port("tokens", ("N",), "the last token of each row"), *state.inputs),
            (Port("logits", ("N", V), dtype, "next-token scores"), *state.outputs),
            lambda N, T: (_ids(V, N), *state.random(N, weight)),
            "one step of the language model", state.names,
        ),
    ]  # fmt: skip


def _classifier_graphs(model: nn.Module) -> list[Graph]:
    logits = Port("logits", ("N", model.config.num_classes), _dtype(model), "class scores")
    return _padded_graphs(model, logits, "the classifier")


def _tagger_graphs(model: nn.Module) -> list[Graph]:
    logits = Port("logits", ("N", "T", model.config.num_tags), _dtype(model),
                  "tag scores of every token (past a row's length: not meaningful)")  # fmt: skip
    return _padded_graphs(model, logits, "the tagger")


def _padded_graphs(model: nn.Module, logits: Port, what: str) -> list[Graph]:
    """The one graph of a model called as ``model(tokens, lengths)[0]`` on right-padded rows."""

    def sequence(model: nn.Module, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        return (model(tokens, lengths)[0],)

    V = model.config.vocab_size
    return [
        Graph(
            "sequence", sequence,
            (_int_port("tokens", ("N", "T"), "token ids, right-padded with 0"),
             _int_port("lengths", ("N",), "each row's length, in [1, T]")),
            (logits,),
            lambda N, T: (_ids(V, N, T, low=1), _lengths(N, T)),
            what,
        )
    ]  # fmt: skip


def _seq2seq_graphs(model: nn.Module) -> list[Graph]:
    from rnnlab.tasks.seq2seq.model import Memory

    c, dtype = model.config, _dtype(model)
    K = 2 if c.encoder.bidirectional else 1
    H = c.encoder.hidden_size
    state = _StatePorts.of(model.decoder, dtype)
    attention = model.attention is not None
    memory = (
        (Port("keys", ("N", "S", K * H), dtype, "the encoder's outputs"),
         Port("projected", ("N", "S", H), dtype, "the keys as the attention projects them"),
         Port("mask", ("N", "S"), "bool", "True inside each source"))
        if attention else ()
    )  # fmt: skip

    def encoder(model: nn.Module, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        mem, state = model.encode(src, src_lengths)
        return (*(mem if attention else ()), *state_parts(state))

    def step(model: nn.Module, prev: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        parts, mem = rest[: len(state.inputs)], rest[len(state.inputs) :]
        keys = Memory(*mem) if attention else None
        logits, final, weights = model.attending_step(prev, _as_state(parts), keys)
        return (logits, *state_parts(final), *((weights,) if attention else ()))

    def encoded(N: int, S: int) -> tuple[Tensor, ...]:
        src = _ids(c.src_vocab_size, N, S, low=1)
        with torch.no_grad():
            return encoder(model, src, _lengths(N, S))

    def step_example(N: int, S: int) -> tuple[Tensor, ...]:
        out = encoded(N, S)
        parts, mem = out[len(memory) :], out[: len(memory)]
        return (_ids(c.tgt_vocab_size, N), *parts, *mem)

    weights = (Port("attention", ("N", "S"), dtype, "the attention over the source"),)
    return [
        Graph(
            "encoder", encoder,
            (_int_port("src", ("N", "S"), "source ids, right-padded with 0"),
             _int_port("src_lengths", ("N",), "each source's length, in [1, S]")),
            (*memory, *state.initial),
            lambda N, S: (_ids(c.src_vocab_size, N, S, low=1), _lengths(N, S)),
            "the encoder: the decoder's memory and initial state", ((), state.names[0]),
        ),
        Graph(
            "step", step,
            (_int_port("prev", ("N",), "the previous target token (<sos> first)"),
             *state.inputs, *memory),
            (Port("logits", ("N", c.tgt_vocab_size), dtype, "next-token scores"),
             *state.outputs, *(weights if attention else ())),
            step_example, "one step of the decoder", state.names,
        ),
    ]  # fmt: skip


def _names_graphs(model: nn.Module) -> list[Graph]:
    c, dtype = model.config, _dtype(model)
    V = c.vocab_size
    state, weight = _StatePorts.of(model.rnn, dtype), model.head.weight

    def sequence(
        model: nn.Module, languages: Tensor, tokens: Tensor, lengths: Tensor
    ) -> tuple[Tensor, ...]:
        return (model(languages, tokens, lengths)[0],)

    def step(
        model: nn.Module, languages: Tensor, tokens: Tensor, *parts: Tensor
    ) -> tuple[Tensor, ...]:
        logits, (_, final) = model.step(tokens, (languages, _as_state(parts)))
        return (logits, *state_parts(final))

    language = _int_port("languages", ("N",), "each row's language id")
    return [
        Graph(
            "sequence", sequence,
            (language, _int_port("tokens", ("N", "T"), "<sos> and characters, right-padded"),
             _int_port("lengths", ("N",), "each row's length, in [1, T]")),
            (Port("logits", ("N", "T", V), dtype, "next-character scores after each"),),
            lambda N, T: (_ids(c.num_languages, N), _ids(V, N, T, low=1), _lengths(N, T)),
            "the name generator over whole names",
        ),
        Graph(
            "step", step,
            (language, _int_port("tokens", ("N",), "the last character (<sos> first)"),
             *state.inputs),
            (Port("logits", ("N", V), dtype, "next-character scores"), *state.outputs),
            lambda N, T: (_ids(c.num_languages, N), _ids(V, N), *state.random(N, weight)),
            "one step of the name generator", state.names,
        ),
    ]  # fmt: skip


def _captioner_graphs(model: nn.Module) -> list[Graph]:
    c, dtype = model.config, _dtype(model)
    S = c.image_size
    state, weight = _StatePorts.of(model.rnn, dtype), model.head.weight

    def encoder(model: nn.Module, images: Tensor) -> tuple[Tensor, ...]:
        return state_parts(model.initial_state(images))

    def step(model: nn.Module, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, final = model.step(tokens, _as_state(state))
        return (logits, *state_parts(final))

    return [
        Graph(
            "encoder", encoder,
            (Port("images", ("N", 3, S, S), dtype, "RGB images in [0, 1]"),),
            state.initial,
            lambda N, T: (torch.rand(N, 3, S, S, dtype=weight.dtype),),
            "the image encoder: the decoder's initial state", ((), state.names[0]),
        ),
        Graph(
            "step", step,
            (_int_port("tokens", ("N",), "the previous word (<start> first)"), *state.inputs),
            (Port("logits", ("N", c.vocab_size), dtype, "next-word scores"), *state.outputs),
            lambda N, T: (_ids(c.vocab_size, N), *state.random(N, weight)),
            "one step of the caption decoder", state.names,
        ),
    ]  # fmt: skip


#: model class ("module:Class") -> (task, its graphs): the models :func:`to_onnx` exports
EXPORTERS: dict[str, tuple[str, Callable[[nn.Module], list[Graph]]]] = {
    "rnnlab.tasks.lm.model:RNNLM": ("lm", _lm_graphs),
    "rnnlab.tasks.classify.model:Classifier": ("classify", _classifier_graphs),
    "rnnlab.tasks.tag.model:Tagger": ("tag", _tagger_graphs),
    "rnnlab.tasks.seq2seq.model:Seq2Seq": ("seq2seq", _seq2seq_graphs),
    "rnnlab.tasks.names.model:NameGenerator": ("names", _names_graphs),
    "rnnlab.tasks.caption.model:Captioner": ("caption", _captioner_graphs),
}


def graphs(model: nn.Module) -> tuple[str, list[Graph]]:
    """The task of ``model`` and the graphs it exports as (see the module docstring).

    Raises:
        RnnlabError: ``model`` is not one of the task models of :data:`EXPORTERS`.
    """
    import importlib

    for target, (task, build) in EXPORTERS.items():
        module, _, name = target.partition(":")
        if isinstance(model, getattr(importlib.import_module(module), name)):
            return task, build(model)
    known = ", ".join(t.rpartition(":")[2] for t in EXPORTERS)
    raise RnnlabError(
        f"cannot export a {type(model).__name__} to ONNX: rnnlab exports its task models ({known})"
    )


def files(path: str | Path, roles: Sequence[str]) -> dict[str, Path]:
    """The file of each role for the export to ``path`` (``FILE.onnx``, ``FILE-step.onnx``).

    Raises:
        RnnlabError: ``path`` does not end in ``.onnx``.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise RnnlabError(f"{path}: an ONNX file name must end in .onnx")
    stem = path.name[: -len(".onnx")]
    return {role: path.with_name(f"{stem}{SUFFIXES[role]}.onnx") for role in roles}


# -- export -------------------------------------------------------------------------------------
def metadata(
    task: str,
    model: nn.Module,
    graph: Graph,
    siblings: Mapping[str, Path],
    vocabs: Mapping[str, Vocab] | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` of ``graph``'s file: everything a runtime needs, as JSON text.

    Keys: ``rnnlab.format``, ``rnnlab.version``, ``rnnlab.task``, ``rnnlab.role``,
    ``rnnlab.files`` (role -> file name, siblings in the same folder), ``rnnlab.inputs`` and
    ``rnnlab.outputs`` (name, shape with "N"/"T"/"S" for the dynamic axes, dtype, doc),
    ``rnnlab.state`` (input and output names, shape, what starts it), ``rnnlab.config`` (the
    model's config), and where known ``rnnlab.vocabs`` (name -> tokens and special tokens),
    ``rnnlab.data`` (e.g. the tokenizer) and ``rnnlab.decoding`` (``sos``, ``eos``, and the
    ids never generated).
    """
    from rnnlab import __version__

    state_in, state_out = graph.state
    props: dict[str, Any] = {
        "format": FORMAT,
        "version": __version__,
        "task": task,
        "role": graph.role,
        "files": {role: p.name for role, p in siblings.items()},
        "inputs": [p.to_meta() for p in graph.inputs],
        "outputs": [p.to_meta() for p in graph.outputs],
        "config": model.config.to_meta(),
    }
    if state_in or state_out:
        port = next(p for p in (*graph.inputs, *graph.outputs) if p.name in state_in + state_out)
        props["state"] = {
            "inputs": list(state_in),
            "outputs": list(state_out),
            "shape": list(port.shape),
            "dtype": port.dtype,
            "initial": "encoder" if "encoder" in siblings else "zeros",
        }
    if vocabs:
        props["vocabs"] = {name: v.to_meta() for name, v in vocabs.items()}
    if data:
        props["data"] = dict(data)
    sos = getattr(model.config, "sos_id", None)
    if sos is not None:
        props["decoding"] = {"sos": sos, "eos": model.config.eos_id, "never": [0, sos]}
    return {
        f"rnnlab.{k}": v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        for k, v in props.items()
    }


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise RnnlabError(f"ONNX export needs the {module} package: pip install {extra}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's warnings and log lines (about torchvision, constant folding) kept out
    of the command's output."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_graph(model: nn.Module, graph: Graph) -> onnx.ModelProto:
    """``graph`` of ``model`` as an ONNX ``ModelProto`` (no metadata), batch and time dynamic.

    The model is traced in eval mode, at :data:`EXAMPLE_N` x :data:`EXAMPLE_T`.
    """
    dims = {s: torch.export.Dim(s) for s in ("N", "T", "S")}
    shapes = tuple(
        {axis: dims[s] for axis, s in enumerate(p.shape) if isinstance(s, str)}
        for p in graph.inputs
    )
    with evaluating(model), torch.no_grad():
        example = graph.example(EXAMPLE_N, EXAMPLE_T)
    with evaluating(model), _quiet():
        program = torch.onnx.export(
            _Traced(model, graph.function), example, dynamo=True, dynamic_shapes=(shapes,),
            input_names=[p.name for p in graph.inputs],
            output_names=[p.name for p in graph.outputs], verbose=False,
        )  # fmt: skip
    return program.model_proto


def to_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    vocabs: Mapping[str, Vocab] | None = None,
    data: Mapping[str, Any] | None = None,
    task: str | None = None,
) -> list[Path]:
    """Write ``model`` (a task model) as ONNX: ``path`` and, for a model that generates, the
    decoding step beside it (``FILE-step.onnx``); returns the files written.

    Every file is written atomically (a temporary file, then renamed) and only after every
    graph has exported, so that a failed export leaves the old files as they were.

    Args:
        model: a task model (:data:`EXPORTERS`) on the CPU; it is exported in eval mode and
            left in its own mode.
        path: ``FILE.onnx``.
        vocabs: the run's vocabularies, stored in the files' metadata (a run's ``vocabs``).
        data: how its data was read (e.g. ``{"tokenizer": "chars"}``), stored likewise.
        task: the task name stored (default: the model's own task).

    Raises:
        RnnlabError: not a task model, a model not on the CPU, a file name not ending in
            ``.onnx``, a file that cannot be written, onnx or onnxscript not installed.

    Example::

        >>> run = load_run("runs/lm")
        >>> to_onnx(run.model, "shakespeare.onnx", vocabs=run.vocabs)
        [PosixPath('shakespeare.onnx'), PosixPath('shakespeare-step.onnx')]
    """
    from rnnlab.train.checkpoint import atomic_write_bytes

    own_task, parts = graphs(model)
    targets = files(path, [g.role for g in parts])
    for p in targets.values():
        if p.is_dir():
            raise RnnlabError(f"{p} is a directory, not a file")
    devices = {p.device.type for p in model.parameters()}
    if devices != {"cpu"}:
        raise RnnlabError(f"export a model on the CPU (model.cpu()), not on {', '.join(devices)}")
    _require("onnx", "'rnnlab[export]'")
    _require("onnxscript", "'rnnlab[export]'")
    protos = []
    for graph in parts:
        proto = export_graph(model, graph)
        props = metadata(task or own_task, model, graph, targets, vocabs, data)
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = f"rnnlab {task or own_task}: {graph.doc}"
        if proto.ByteSize() >= 2**31:
            raise RnnlabError("the model is too large for one ONNX file (2 GB)")
        protos.append(proto)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for graph, proto in zip(parts, protos):
        atomic_write_bytes(targets[graph.role], proto.SerializeToString())
    return list(targets.values())


def verify_onnx(
    model: nn.Module, path: str | Path, sizes: Sequence[tuple[int, int]] = ((1, 1), (2, 19))
) -> dict[Path, float]:
    """The largest difference between each file :func:`to_onnx` wrote to ``path``, run in
    onnxruntime, and ``model`` in eval mode, on random inputs at every (batch, time) of
    ``sizes``: sizes other than the example's (:data:`EXAMPLE_N`, :data:`EXAMPLE_T`), so that a
    graph fixed to the example fails (a shape other than PyTorch's raises).

    Raises:
        RnnlabError: onnxruntime is not installed; an output's shape differs from PyTorch's.
    """
    _require("onnxruntime", "onnxruntime")
    import onnxruntime

    _, parts = graphs(model)
    targets = files(path, [g.role for g in parts])
    worst: dict[Path, float] = {}
    for graph in parts:
        session = onnxruntime.InferenceSession(
            str(targets[graph.role]), providers=["CPUExecutionProvider"]
        )
        error = 0.0
        for N, T in sizes:
            with evaluating(model), torch.no_grad():
                inputs = graph.example(N, T)
                expected = graph.function(model, *inputs)
            feed = {p.name: x.numpy() for p, x in zip(graph.inputs, inputs)}
            got = session.run([p.name for p in graph.outputs], feed)
            for p, want, have in zip(graph.outputs, expected, got):
                if tuple(want.shape) != have.shape:
                    raise RnnlabError(
                        f"{targets[graph.role]}: {p.name} has shape {have.shape} at N={N}, "
                        f"T={T}, PyTorch's {tuple(want.shape)}"
                    )
                if want.dtype == torch.bool:
                    error = max(error, float((torch.from_numpy(have) != want).sum()))
                elif want.numel():
                    error = max(error, float((torch.from_numpy(have) - want).abs().max()))
        worst[targets[graph.role]] = error
    return worst


__all__ = [
    "EXPORTERS",
    "FORMAT",
    "Graph",
    "Port",
    "export_graph",
    "files",
    "graphs",
    "metadata",
    "to_onnx",
    "verify_onnx",
]

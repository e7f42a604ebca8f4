"""ONNX and torch.export of rnnlab layers: every cell and option, batch and time truly dynamic.

Each test exports in a fresh Python process: torch 2.13 silently fixes the time axis of a
second export of ``torch.nn.GRU`` in one process, and the pytest process may host other tests'
exports. (Within one process, several exports are safe here: each is run at other lengths, so a
fixed axis would fail loudly; test_second_export_is_as_dynamic checks it.) This file is also
that process's program: ``python test_layers.py JOB REPORT`` exports a bundle of layers (one
layer per spec, all reading the same inputs), runs each export at several batch sizes and
lengths next to eager PyTorch, and writes what it found to REPORT (JSON), on which the tests
assert.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from rnnlab import nn as rnnlab_nn
from rnnlab.core.cells import LSTMCell
from rnnlab.core.export import onnx_operator
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import CELLS
from rnnlab.core.state import state_parts

D, H = 3, 4
#: the example the bundle is exported with, (N, T)
EXAMPLE = (3, 5)
#: where each export is run: batch 1 and more, length 1, shorter and longer than the example
SIZES = ((1, 1), (2, 3), (4, 9))
TOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]

#: The ONNX operator each registered cell becomes (cells not named: a Scan over its step).
ONNX_OPS = {
    "lstm": "LSTM",
    "peephole": "LSTM",
    "gru": "GRU",
    "gru-before": "GRU",
    "elman": "RNN",
    "elman-relu": "RNN",
}
RNN_OPS = ("LSTM", "GRU", "RNN")


def spec(cell: str, **kw: object) -> dict:
    """One layer of a bundle: the cell's registry name, then ``options`` (cell keyword
    arguments), ``num_layers``, ``bidirectional``, ``batch_first``, ``return_states``,
    ``lengths`` and ``state`` (feed them), or ``dropin`` (an ``rnnlab.nn`` class name), and
    ``layer``: more keyword arguments of the layer (its regularisers)."""
    base = {"cell": cell, "options": {}, "num_layers": 1, "bidirectional": False, "layer": {}}
    base.update(batch_first=True, return_states=False, lengths=True, state=True, dropin=None)
    return {**base, **kw}


# -- the worker (runs in its own process) --------------------------------------------------
class Bundle(nn.Module):
    """Every spec's layer on the same inputs; returns all their outputs and final states."""

    def __init__(self, specs: list[dict]) -> None:
        super().__init__()
        self.specs = specs
        layers = []
        for s in specs:
            shape = {"num_layers": s["num_layers"], "bidirectional": s["bidirectional"]}
            if s["dropin"]:
                dropin = getattr(rnnlab_nn, s["dropin"])
                layers.append(dropin(D, H, batch_first=s["batch_first"], **shape, **s["options"]))
            else:
                cell = CELLS[s["cell"]].with_options(**s["options"])
                options = {"batch_first": s["batch_first"], "return_states": s["return_states"]}
                layers.append(Recurrent(cell, D, H, **shape, **options, **s["layer"]))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, ...]:
        results: list[Tensor] = []
        for s, layer in zip(self.specs, self.layers):
            inp = x if s["batch_first"] else x.transpose(0, 1)
            LK = layer.num_layers * layer.num_directions
            state = None
            if s["state"]:
                state = (h0[:LK], c0[:LK]) if layer.state_is_tuple else h0[:LK]
            if s["dropin"]:
                out, *rest = layer(inp, state)
            else:
                out, *rest = layer(inp, state, lengths if s["lengths"] else None)
            results.append(out if s["batch_first"] else out.transpose(0, 1))
            for part in rest:
                results += state_parts(part)
        return tuple(results)


def _inputs(N: int, T: int) -> tuple[Tensor, ...]:
    lengths = torch.randint(1, T + 1, (N,))
    return (torch.randn(N, T, D), lengths, 0.5 * torch.randn(4, N, H), 0.5 * torch.randn(4, N, H))


def _dynamic_shapes() -> tuple[dict, ...]:
    N, T = torch.export.Dim("N", min=1), torch.export.Dim("T", min=1)
    return ({0: N, 1: T}, {0: N}, {1: N}, {1: N})


def _errors(got: list, want: tuple[Tensor, ...]) -> list[float]:
    assert len(got) == len(want), (len(got), len(want))
    return [float((torch.as_tensor(g) - w).abs().max()) for g, w in zip(got, want)]


def _onnx_nodes(graph: object) -> int:
    """Nodes of an ONNX graph, those of its subgraphs (a Scan's body) included."""
    count = 0
    for node in graph.node:  # type: ignore[attr-defined]
        count += 1
        for attr in node.attribute:
            if attr.g.node:
                count += _onnx_nodes(attr.g)
    return count


def _export_onnx(bundle: Bundle, example: tuple[Tensor, ...]) -> dict:
    import onnxruntime as ort

    program = torch.onnx.export(
        bundle, example, dynamic_shapes=_dynamic_shapes(), dynamo=True, verbose=False
    )
    proto = program.model_proto
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options)
    names = [i.name for i in session.get_inputs()]
    report: dict = {"errors": [], "nodes": [], "node_count": _onnx_nodes(proto.graph)}
    x_dims = next(i for i in proto.graph.input if i.name == "x").type.tensor_type.shape.dim
    report["x_dims"] = [d.dim_param or d.dim_value for d in x_dims]
    for node in proto.graph.node:
        if node.op_type in (*RNN_OPS, "Scan", "Loop"):
            attrs = {a.name: _attr(a) for a in node.attribute if a.name != "body"}
            report["nodes"].append({"op": node.op_type, "attrs": attrs, "inputs": len(node.input)})
    for N, T in SIZES:
        inputs = _inputs(N, T)
        feeds = {n: t.numpy() for n, t in zip(("x", "lengths", "h0", "c0"), inputs) if n in names}
        with torch.no_grad():
            want = bundle(*inputs)
        report["errors"].append(_errors(session.run(None, feeds), want))
    return report


def _attr(attribute: object) -> object:
    import onnx

    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def _export_torch(bundle: Bundle, example: tuple[Tensor, ...]) -> dict:
    program = torch.export.export(bundle, example, dynamic_shapes=_dynamic_shapes())
    graph = program.graph_module
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    report: dict = {
        "errors": [],
        "scans": sum(n.target is torch.ops.higher_order.scan for n in program.graph.nodes),
        "rnn_ops": [t for t in targets if any(k in t for k in ("lstm", "gru", "rnn_"))],
        "node_count": sum(len(m.graph.nodes) for m in graph.modules() if hasattr(m, "graph")),
    }
    module = program.module()
    for N, T in SIZES:
        inputs = _inputs(N, T)
        with torch.no_grad():
            want = bundle(*inputs)
            report["errors"].append(_errors(list(module(*inputs)), want))
    return report


def _hook_error() -> str:
    """What exporting a layer with a step hook says."""
    layer = Recurrent(CELLS["gru"], D, H)
    layer.register_step_hook(lambda *args: None)
    try:
        torch.export.export(layer, (torch.randn(2, 3, D),))
    except Exception as error:  # the message is what is checked
        return f"{type(error).__name__}: {error}"
    return "no error"


def worker(job: dict, report_path: str) -> None:
    """Export a bundle of ``job["specs"]`` in each of ``job["modes"]`` ("onnx", "torch") once
    per example length of ``job["lengths"]`` (under ``torch.no_grad()`` unless ``job["grad"]``),
    check each export, write the report."""
    torch.manual_seed(0)
    bundle = Bundle(job["specs"]).eval()
    result: dict = {}
    with contextlib.nullcontext() if job["grad"] else torch.no_grad():
        for mode in job["modes"]:
            export = _export_onnx if mode == "onnx" else _export_torch
            result[mode] = [export(bundle, _inputs(EXAMPLE[0], T)) for T in job["lengths"]]
    if job["hook"]:
        result["hook_error"] = _hook_error()
    Path(report_path).write_text(json.dumps(result))


# -- the tests ---------------------------------------------------------------------------
def run_worker(
    specs: list[dict],
    tmp_path: Path,
    lengths: tuple[int, ...] = (EXAMPLE[1],),
    grad: bool = True,
    hook: bool = False,
) -> dict:
    """Run :func:`worker` in a fresh process, in both modes; its report: per mode, a list of
    exports (one per example length), and with ``hook`` what a hooked layer's export says."""
    report = tmp_path / "report.json"
    job = {"modes": ["onnx", "torch"], "specs": specs, "lengths": lengths, "grad": grad}
    job["hook"] = hook
    args = [sys.executable, __file__, json.dumps(job), str(report)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(report.read_text())


def outputs_of(s: dict) -> int:
    """How many tensors spec ``s`` adds to the bundle's outputs."""
    lstm = s["dropin"] == "LSTM" or (s["dropin"] is None and CELLS[s["cell"]].cls is LSTMCell)
    parts = 2 if lstm else 1
    return 1 + parts * (2 if s["return_states"] else 1)


def assert_close(specs: list[dict], export: dict) -> None:
    """Every output of every spec within TOL of eager, at every size."""
    bounds = [0]
    for s in specs:
        bounds.append(bounds[-1] + outputs_of(s))
    for (N, T), errors in zip(SIZES, export["errors"]):
        assert len(errors) == bounds[-1]
        for s, lo, hi in zip(specs, bounds, bounds[1:]):
            worst = max(errors[lo:hi])
            assert worst < TOL, f"{s} at N={N}, T={T}: max error {worst:.2e}"


def onnx_op_of(s: dict) -> str:
    """The ONNX node of each layer of spec ``s``: its cell's operator (ONNX_OPS), else a Scan
    (layer norm, per-step states, and the cells without an operator)."""
    if s["options"].get("layer_norm") or s["return_states"] or s["layer"].get("zoneout"):
        return "Scan"  # (zoneout: ONNX's recurrent nodes cannot blend a state)
    return ONNX_OPS.get(s["cell"], "Scan")


def expected_onnx_nodes(specs: list[dict]) -> Counter:
    """One ONNX node per layer (both directions in one)."""
    counts: Counter = Counter()
    for s in specs:
        counts[onnx_op_of(s)] += s["num_layers"]
    return counts


def assert_onnx_graph(specs: list[dict], export: dict) -> None:
    found = Counter(node["op"] for node in export["nodes"])
    assert found == expected_onnx_nodes(specs), export["nodes"]
    assert isinstance(export["x_dims"][0], str) and isinstance(export["x_dims"][1], str), (
        f"batch and time must stay symbolic in the ONNX graph, got {export['x_dims']}"
    )


def assert_torch_graph(specs: list[dict], export: dict) -> None:
    """One scan loop per layer (both directions in one), and none of torch's RNN kernels."""
    assert export["scans"] == sum(s["num_layers"] for s in specs)
    assert export["rnn_ops"] == []


EVERY_CELL = [spec(name) for name in CELLS]


def test_every_cell(tmp_path: Path) -> None:
    """Every registered cell, with lengths and an initial state, in ONNX (its operator, or a
    Scan over its step) and in torch.export (a scan loop), equal to eager at other batch sizes
    and lengths; exported as torch.export's users usually do, gradients on."""
    report = run_worker(EVERY_CELL, tmp_path)
    (onnx_export,), (torch_export,) = report["onnx"], report["torch"]
    assert_onnx_graph(EVERY_CELL, onnx_export)
    assert_close(EVERY_CELL, onnx_export)
    nodes = onnx_export["nodes"]
    gru = sorted(n["attrs"]["linear_before_reset"] for n in nodes if n["op"] == "GRU")
    assert gru == [0, 1]  # gru-before is Cho's form, gru torch's
    rnn = sorted(n["attrs"]["activations"][0] for n in nodes if n["op"] == "RNN")
    assert rnn == ["Relu", "Tanh"]
    lstm_inputs = sorted(n["inputs"] for n in nodes if n["op"] == "LSTM")
    assert lstm_inputs == [7, 8]  # the peephole LSTM's P is its 8th input
    assert_torch_graph(EVERY_CELL, torch_export)
    assert_close(EVERY_CELL, torch_export)


OPTIONS = [
    spec("peephole", num_layers=2, bidirectional=True, batch_first=False),
    spec("gru-before", options={"bias": False}, bidirectional=True, state=False),
    spec("elman-relu", num_layers=2, lengths=False, state=False),
    spec("lstm", options={"layer_norm": True, "bias": False, "forget_bias": None},
         return_states=True, batch_first=False),
    spec("gru", options={"layer_norm": True}, bidirectional=True),
    spec("mut2", num_layers=2, bidirectional=True, lengths=False, state=False),
    spec("additive", return_states=True, bidirectional=True),
    # the regularisers: off in evaluation but zoneout's expectation, s = p s' + (1 - p) s~
    spec("lstm", layer={"zoneout": 0.2, "zoneout_cell": 0.4, "weight_drop": 0.5,
                        "locked_dropout": True, "output_dropout": 0.3}, bidirectional=True),
    spec("gru", layer={"zoneout": 0.3, "input_dropout": 0.2}, num_layers=2),
]  # fmt: skip


def test_options(tmp_path: Path) -> None:
    """Stacked, bidirectional (one node per layer), without bias, time-major, with and
    without lengths or initial state, layer norm, per-step states, zoneout and the dropouts
    (evaluation mode); in ONNX and torch.export,
    under torch.no_grad() (as for inference; test_every_cell exports with gradients on). A
    layer with step hooks refuses to export."""
    report = run_worker(OPTIONS, tmp_path, grad=False, hook=True)
    (onnx_export,), (torch_export,) = report["onnx"], report["torch"]
    assert_onnx_graph(OPTIONS, onnx_export)
    assert_close(OPTIONS, onnx_export)
    directions = Counter(n["attrs"].get("direction") for n in onnx_export["nodes"])
    both = [s for s in OPTIONS if s["bidirectional"] and onnx_op_of(s) != "Scan"]
    assert directions["bidirectional"] == sum(s["num_layers"] for s in both)
    assert_torch_graph(OPTIONS, torch_export)
    assert_close(OPTIONS, torch_export)
    assert report["hook_error"].startswith("RnnlabError") and "step hooks" in report["hook_error"]


SECOND = [spec("peephole", bidirectional=True), spec("mut1")]


def test_second_export_is_as_dynamic(tmp_path: Path) -> None:
    """Exported again in the same process from an example of another length, a bundle gives
    the same graph (as many nodes: nothing is unrolled), dynamic again (torch 2.13 fixes the
    length of torch.nn.GRU's second export)."""
    report = run_worker(SECOND, tmp_path, lengths=(EXAMPLE[1], 8), grad=False)
    for mode in ("onnx", "torch"):
        first, second = report[mode]
        for export in (first, second):
            assert_close(SECOND, export)
        assert first["node_count"] == second["node_count"], mode
    for export in report["onnx"]:
        assert_onnx_graph(SECOND, export)


DROPINS = [
    spec("lstm", dropin="LSTM", num_layers=2, bidirectional=True, lengths=False),
    spec("gru", dropin="GRU", batch_first=False, lengths=False, state=False),
    spec("elman", dropin="RNN", options={"nonlinearity": "relu"}, lengths=False),
    spec("peephole", dropin="LSTM", options={"peephole": True}, lengths=False),
]


def test_dropins(tmp_path: Path) -> None:
    """The torch.nn drop-ins (rnnlab.nn), in ONNX (torch's operators) and torch.export."""
    report = run_worker(DROPINS, tmp_path, grad=False)
    (onnx_export,), (torch_export,) = report["onnx"], report["torch"]
    assert_onnx_graph(DROPINS, onnx_export)
    assert_close(DROPINS, onnx_export)
    assert torch_export["scans"] == sum(s["num_layers"] for s in DROPINS)
    assert_close(DROPINS, torch_export)


@pytest.mark.parametrize("name", list(CELLS))
def test_onnx_operator_table(name: str) -> None:
    """The mapping itself, without exporting: ONNX_OPS for float32 cells without layer norm;
    nothing with layer norm or in float64 (onnxruntime has no double RNN kernels)."""
    op = onnx_operator(CELLS[name](D, H))
    assert (op.op_type if op else "Scan") == ONNX_OPS.get(name, "Scan")
    assert onnx_operator(CELLS[name](D, H, layer_norm=True)) is None
    assert onnx_operator(CELLS[name](D, H, dtype=torch.float64)) is None


def test_onnx_operator_gate_orders() -> None:
    """ONNX's LSTM gates are i, o, f, c (rnnlab's i, f, g, o), its GRU's z, r, h (rnnlab's
    r, z, n); the peephole LSTM carries P."""
    lstm = onnx_operator(CELLS["peephole"](D, H))
    gru = onnx_operator(CELLS["gru-before"](D, H))
    assert lstm is not None and gru is not None
    assert (lstm.order, lstm.peephole) == ((0, 3, 1, 2), True)
    assert (gru.order, gru.attributes) == ((1, 0, 2), {"linear_before_reset": 0})


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]), sys.argv[2])

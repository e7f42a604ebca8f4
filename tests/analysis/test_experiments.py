"""Experiments: the seed ensemble against separate models, the tasks' baselines, the parameter
budgets, and each experiment's qualitative claim in its small settings (fixed seeds)."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch

from rnnlab import CELLS, LSTMCell
from rnnlab.analysis.experiments import run_experiment
from rnnlab.analysis.experiments.seeds import (
    SeedEnsemble,
    SequenceModel,
    TrainSettings,
    forward_in_pieces,
    hidden_for_budget,
    sequence_model_parameters,
    train,
)
from rnnlab.analysis.experiments.synthetic import LECTURE_CELLS
from rnnlab.analysis.experiments.tasks import Adding, Copy, Latch
from rnnlab.cli import main


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models are tiny: one torch thread is fastest (as `rnnlab experiment` defaults to),
    and it keeps the timing the same with or without pytest-xdist."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- parameter budgets --------------------------------------------------------------------
def test_count_parameters_matches_the_formula():
    D, H, O = 3, 10, 2
    lstm = 4 * (H * D + H * H + 2 * H) + (H * O + O)
    assert sequence_model_parameters(LSTMCell, D, H, O) == lstm
    elman = H * D + H * H + 2 * H + H * O + O
    assert sequence_model_parameters(CELLS["elman"], D, H, O) == elman


@pytest.mark.parametrize("budget", [300, 4500])
def test_hidden_for_budget_is_the_closest_size(budget):
    sizes = {}
    for name in (*LECTURE_CELLS, "mut1", "mut3"):
        cell = CELLS[name]
        H = hidden_for_budget(cell, 2, 1, budget)
        n = sequence_model_parameters(cell, 2, H, 1)
        for other in (H - 1, H + 1):  # no neighbour is closer
            if other >= 1:
                assert abs(n - budget) <= abs(sequence_model_parameters(cell, 2, other, 1) - budget)
        sizes[name] = H
    assert sizes["elman"] > sizes["gru"] > sizes["lstm"]  # fewer gates, more units
    with pytest.raises(ValueError, match="budget"):
        hidden_for_budget(LSTMCell, 2, 1, 5)


# -- the seed ensemble ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["elman", "gru", "lstm", "peephole", "mut1", "lstm-nofg"])
def test_ensemble_computes_the_separate_models(name):
    seeds = [3, 7, 11]
    ens = SeedEnsemble(CELLS[name], 2, 4, 3, seeds, readout="all")
    x = torch.randn(3, 5, 6, 2)
    out = ens(x)
    for s, seed in enumerate(seeds):
        torch.manual_seed(seed)
        alone = SequenceModel(CELLS[name], 2, 4, 3, readout="all")
        torch.testing.assert_close(out[s], alone(x[s]), rtol=1e-5, atol=1e-6)
        for p, q in zip(alone.parameters(), ens.member(s).parameters()):
            torch.testing.assert_close(p, q)


def test_ensemble_training_equals_separate_training_with_per_seed_clipping():
    """A few Adam steps with per-seed clipping: each block follows its own model exactly."""
    task = Adding(8)
    seeds = [0, 1]
    ens = SeedEnsemble(CELLS["gru"], 2, 5, 1, seeds)
    settings = TrainSettings(steps=3, batch=4, lr=0.05, clip=0.1, eval_every=100, test_size=8)
    train(ens, task, settings, data_seed=5)
    # the same data stream, split by seed
    gen = torch.Generator().manual_seed(5)
    batches = [task.sample(len(seeds) * 4, gen) for _ in range(3)]
    for s, seed in enumerate(seeds):
        torch.manual_seed(seed)
        model = SequenceModel(CELLS["gru"], 2, 5, 1)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for x, y in batches:
            xs, ys = x.reshape(2, 4, *x.shape[1:])[s], y.reshape(2, 4)[s]
            opt.zero_grad()
            task.loss(model(xs)[None], ys[None]).sum().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            opt.step()
        for p, q in zip(model.parameters(), ens.member(s).parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_ensemble_rejects_layer_norm():
    with pytest.raises(ValueError, match="layer norm"):
        SeedEnsemble(partial(LSTMCell, layer_norm=True), 1, 3, 1, [0, 1])


@pytest.mark.parametrize(("name", "task"), [("mingru", Adding(30)), ("minlstm", Copy(8)),
                                            ("lstm", Adding(30)), ("gru", Copy(8))])  # fmt: skip
def test_a_large_evaluation_runs_in_pieces_with_the_same_outputs(name, task):
    ens = SeedEnsemble(CELLS[name], task.input_size, 6, task.output_size, [0, 1], task.readout)
    x, _ = task.sample(2 * 50, torch.Generator().manual_seed(0))
    x = x.reshape(2, 50, *x.shape[1:])
    per_sequence = 2 * x.shape[2] * 6
    calls = []
    ens.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    with torch.no_grad():
        whole = ens(x)
        assert torch.equal(forward_in_pieces(ens, x, limit=per_sequence * 50), whole)
        assert calls == [50, 50]  # within the limit: one forward, the same one
        pieces = forward_in_pieces(ens, x, limit=per_sequence * 49, piece=per_sequence * 7)
    assert calls[2:] == [7] * 7 + [1]
    torch.testing.assert_close(pieces, whole, rtol=1e-6, atol=1e-6)


# -- tasks ---------------------------------------------------------------------------------
def test_adding_baseline_is_the_variance_of_the_sum():
    x, y = Adding(40).sample(20000, torch.Generator().manual_seed(0))
    assert x.shape == (20000, 40, 2) and torch.all(x[..., 1].sum(1) == 2)
    assert torch.allclose(y, (x[..., 0] * x[..., 1]).sum(1))
    mse_of_one = float((y - 1).pow(2).mean())
    assert mse_of_one == pytest.approx(Adding.baseline, rel=0.03)


def test_copy_baseline_is_the_memoryless_optimum():
    task = Copy(15)
    x, y = task.sample(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 35, 10) and y.shape == (64, 35)
    assert torch.equal(x[:, :10].argmax(-1), y[:, -10:])
    assert torch.all(x[:, 24].argmax(-1) == 9)  # the delimiter, one step before the recall
    # blanks until the recall, then uniform over the 8 symbols
    logits = torch.full((64, 35, 9), -1e9)
    logits[:, :25, 0] = 0.0
    logits[:, 25:, 1:] = 0.0
    assert float(task.loss(logits[None], y[None])) == pytest.approx(task.baseline, rel=1e-6)
    assert task.baseline == pytest.approx(10 * math.log(8) / 35)


def test_latch_first_input_is_the_bit():
    x, y = Latch(30).sample(256, torch.Generator().manual_seed(0))
    assert x.shape == (256, 31, 1)
    assert torch.equal(x[:, 0, 0], y * 2 - 1)
    assert float(x[:, 1:].var()) == pytest.approx(0.2, rel=0.1)


# -- experiments: their claims in the small settings ---------------------------------------
def test_latch_a_linear_memory_path_succeeds_where_elman_fails(tmp_path):
    """Plain gradient descent on the latch at T = 20: the cells whose state has an undecayed
    linear path (the original LSTM's constant error carousel, the additive cell) learn to hold
    the bit from (nearly) every seed; the Elman network from (nearly) none."""
    result = run_experiment("latch", "test", tmp_path)
    p = {r["cell"]: r["p_success"] for r in result.rows}
    assert p["elman"] <= 0.25
    assert p["lstm-nofg"] >= 0.75 and p["additive"] >= 0.75
    assert {r["seeds"] for r in result.rows} == {8}
    assert (tmp_path / "latch.png").stat().st_size > 0


def test_adding_and_copy_report_against_their_baselines(tmp_path):
    adding = run_experiment("adding", "test", tmp_path / "adding")
    for r in adding.rows:
        assert r["baseline"] == pytest.approx(1 / 6)
        assert 0 <= r["mse_min"] <= r["mse_median"] <= r["mse_max"] < 2 * r["baseline"]
    copy = run_experiment("copy", "test", tmp_path / "copy")
    for r in copy.rows:
        assert r["baseline"] == pytest.approx(10 * math.log(8) / 30)
        assert 0 < r["ce_median"] < 3 * r["baseline"]
    assert (tmp_path / "adding" / "adding.png").exists() and (
        tmp_path / "copy" / "copy.png"
    ).exists()


def test_compare_runs_every_cell_on_every_task_at_equal_size(tmp_path):
    result = run_experiment("compare", "test", tmp_path)
    cells = ("elman", "lstm", "mut1")
    budgets = {"lm": 8000, "adding": 600, "names": 4000}
    for task, budget in budgets.items():
        rows = [r for r in result.rows if r["task"] == task]
        assert [r["cell"] for r in rows] == list(cells)
        assert sorted(r["rank"] for r in rows) == [1, 2, 3]
        for r in rows:  # equal parameter counts (H is an integer: within 10% at these sizes)
            assert abs(r["params"] - budget) <= 0.1 * budget, (task, r)
            assert math.isfinite(r["mean"]) and r["seeds"] == 2
    lm = {r["cell"]: r["mean"] for r in result.rows if r["task"] == "lm"}
    assert all(3.0 < v < 7.0 for v in lm.values())  # bits/char: learning has begun (log2 V ~ 5.9)
    assert len(result.data["per_seed"]) == 3 * 3 * 2
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_compare_plot_keeps_a_blown_up_cell_off_the_scale():
    """One cell's loss 400x the others' (the additive cell's LM in the full setting) must not
    flatten the other bars: the axis spans the rest, the outlier is labelled with its value."""
    from rnnlab.analysis.experiments.compare import SETTINGS, _figure

    config = SETTINGS["test"]
    values = {"elman": 2.5, "lstm": 2.4, "mut1": 983.5}
    rows = [
        {"task": "lm", "cell": c, "mean": v, "std": 0.02} for c, v in values.items()
    ]  # fmt: skip
    fig = _figure(config, ["lm"], rows)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert 2.0 < lo < 2.4 and 2.5 < hi < 3.0
    assert any("983.5" in t.get_text() and "off scale" in t.get_text() for t in ax.texts)


def test_regularizers_stabilizer_steadies_the_hidden_norm(tmp_path):
    result = run_experiment("regularizers", "test", tmp_path)
    assert [r["arm"] for r in result.rows] == ["lstm beta=0", "lstm beta=50", "lstm layer norm"]
    runs = {r["arm"]: r for r in result.data["runs"]}

    def wobble(norms):  # the stabilizer's own target: mean |(||h_t|| - ||h_{t-1}||)|
        return sum(abs(a - b) for a, b in zip(norms[1:], norms[:-1])) / (len(norms) - 1)

    assert wobble(runs["lstm beta=50"]["norms"]) < wobble(runs["lstm beta=0"]["norms"])
    for r in result.rows:
        assert math.isfinite(r["val_loss"]) and r["val_loss"] < math.log(65)
        assert math.isfinite(r["drift"])


def test_minimal_experiment_sizes_runs_and_tables(tmp_path):
    from rnnlab.analysis.experiments.minimal import matched_hidden
    from rnnlab.core.layers import Recurrent
    from rnnlab.core.registry import cell_factory

    def count(cell, d, h):
        return sum(p.numel() for p in Recurrent(cell_factory(cell), d, h).parameters())

    lstm = count("lstm", 16, 16)
    for cell in ("mingru", "minlstm", "gru"):
        h = matched_hidden(cell, 16, lstm)
        # nearest: one unit more or less is further from the LSTM's count
        assert abs(count(cell, 16, h) - lstm) <= abs(count(cell, 16, h + 1) - lstm)
        assert abs(count(cell, 16, h) - lstm) <= abs(count(cell, 16, h - 1) - lstm)
    result = run_experiment("minimal", "test", tmp_path)
    speed = [r for r in result.rows if r["part"] == "speed"]
    assert {(r["cell"], r["T"]) for r in speed} == {
        (c, T) for c in ("lstm", "mingru", "minlstm") for T in (20, 60)
    }
    for r in speed:
        assert r["tokens_per_s"] > 0 and abs(r["params"] / lstm - 1) < 0.05
        assert r["implementation"] == ("torch" if r["cell"] == "lstm" else "fast")
    tasks = [r for r in result.rows if r["part"] in ("adding", "copy")]
    assert len(tasks) == 6 and all(math.isfinite(r["median"]) for r in tasks)
    adding = [r for r in tasks if r["part"] == "adding"]
    assert all(r["baseline"] == pytest.approx(1 / 6) for r in adding)
    for r in tasks:
        assert r["min"] <= r["median"] <= r["max"]
        assert (r["recall"] is None) == (r["part"] == "adding")
        assert (r["updates_to_solve"] == "") == (r["p_success"] == 0)
    assert (tmp_path / "minimal.png").stat().st_size > 0


# -- the command line ----------------------------------------------------------------------
def test_cli_runs_the_quick_clipping_experiment(tmp_path, capsys):
    assert main(["experiment", "clipping", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no clipping" in out and "non-finite steps" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["setting"] == "quick"
    rows = {r["arm"]: r for r in saved["rows"]}
    assert rows["no clipping"]["nonfinite_steps"] > 0 and rows["clip 1"]["nonfinite_steps"] == 0
    assert (tmp_path / "results.csv").read_text().startswith("arm,nonfinite_steps")
    assert (tmp_path / "clipping.png").stat().st_size > 0


def test_cli_quick_gradients_vanish_for_elman_not_lstm(tmp_path, capsys):
    assert main(["experiment", "gradients", "--quick", "--out", str(tmp_path)]) == 0
    assert "ratio_lag50" in capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["cell"], r["state"]): r for r in saved["rows"]}
    # at initialisation (torch's init, forget bias 1) Elman's gradient at lag 50, relative to
    # lag 0, is orders of magnitude below the LSTM's
    elman, lstm = rows[("elman", "untrained")], rows[("lstm", "untrained")]
    assert elman["ratio_lag50"] < 1e-4 * lstm["ratio_lag50"]
    assert elman["decay_lag_1e3"] < lstm["decay_lag_1e3"]
    for name in ("results.csv", "gradient_flow.png", "jacobians.png", "gates_lstm.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    for argv in (
        ["experiment", "latch", "--seeds", "0", "--out", str(tmp_path)],
        ["experiment", "no-such-experiment"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rnnlab experiment: error:"), err


def test_cli_diagnose_a_language_model_checkpoint(tmp_path, capsys):
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.tasks.lm.data import build_vocab, read_corpus
    from rnnlab.tasks.lm.model import RNNLM, LMConfig
    from rnnlab.train.checkpoint import save_checkpoint

    vocab = build_vocab(read_corpus())
    rnn = RecurrentConfig(cell="gru", hidden_size=16, num_layers=2, dropout=0.0)
    model = RNNLM(LMConfig(vocab_size=len(vocab), embedding_size=8, rnn=rnn))
    meta = {
        "task": "lm",
        "model_config": model.config.to_meta(),
        "vocabs": {"tokens": vocab.to_meta()},
    }
    save_checkpoint(tmp_path / "run" / "best", model, meta)
    assert main(["diagnose", str(tmp_path / "run"), "--length", "30", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "layer0" in out and "layer1" in out and "gates" in out
    report = json.loads((tmp_path / "run" / "diagnostics" / "diagnostics.json").read_text())
    flow = report["gradient_flow"]["layer0"]["norms_by_lag"]
    assert len(flow) == 30 and flow[0] > 0
    assert set(report["gates"]["layer1"]) == {"r", "z"}
    for name in ("gradient_flow.png", "jacobians.png", "gates_layer0.png"):
        assert (tmp_path / "run" / "diagnostics" / name).stat().st_size > 0


def test_cli_diagnose_a_classifier_checkpoint(tmp_path, capsys):
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.data import bundled
    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.classify.data import characters, read_examples
    from rnnlab.tasks.classify.model import Classifier, ClassifierConfig
    from rnnlab.train.checkpoint import save_checkpoint

    examples = read_examples(bundled("names"))
    labels = sorted({e.label for e in examples})
    vocab = Vocab.build((characters(e.text) for e in examples), sos=None, eos=None)
    rnn = RecurrentConfig(cell="lstm", hidden_size=12, bidirectional=True)
    config = ClassifierConfig(vocab_size=len(vocab), num_classes=len(labels), embed_dim=8, rnn=rnn)
    model = Classifier(config)
    meta = {
        "task": "classify",
        "model_config": config.to_meta(),
        "vocabs": {"tokens": vocab.to_meta(), "labels": Vocab.of_labels(labels).to_meta()},
    }
    save_checkpoint(tmp_path / "clf", model, meta)
    assert main(["diagnose", str(tmp_path / "clf"), "--out", str(tmp_path / "d")]) == 0
    assert "layer0.reverse" in capsys.readouterr().out
    report = json.loads((tmp_path / "d" / "diagnostics.json").read_text())
    assert set(report["gates"]) == {"layer0", "layer0.reverse"}
    assert set(report["gates"]["layer0"]) == {"i", "f", "g", "o"}

"""The unit store that lets an interrupted experiment continue where it stopped."""

from __future__ import annotations

import json
import math

import pytest

from rnnlab.analysis.experiments import run_experiment
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.errors import RnnlabError


def test_a_unit_is_computed_once_and_read_back(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"loss": 0.5, "curve": (1, 2), "bad": math.inf}

    store = UnitStore(tmp_path / "units", {"steps": 10})
    first = store.get("lstm-T5", compute)
    again = UnitStore(tmp_path / "units", {"steps": 10}).get("lstm-T5", compute)
    assert calls == [1]
    assert first == again == {"loss": 0.5, "curve": [1, 2], "bad": math.inf}


def test_another_configuration_or_a_damaged_file_is_recomputed(tmp_path):
    counter = iter(range(100))
    store = UnitStore(tmp_path, {"steps": 10})
    assert store.get("u", lambda: next(counter)) == 0
    assert UnitStore(tmp_path, {"steps": 20}).get("u", lambda: next(counter)) == 1
    store.path("u").write_text('{"format": 1, "unit": "u", "conf')  # a torn write
    assert UnitStore(tmp_path, {"steps": 20}).get("u", lambda: next(counter)) == 2
    record = json.loads(store.path("u").read_text())
    assert record["config"] == {"steps": 20} and record["value"] == 2


def test_without_a_directory_nothing_is_kept(tmp_path):
    store = UnitStore(None, {})
    assert [store.get("u", lambda: 7), store.get("u", lambda: 8)] == [7, 8]
    assert store.reused == []


def test_unit_names_become_safe_file_names(tmp_path):
    store = UnitStore(tmp_path, {})
    assert store.path("lstm beta=50/seed 0").name == "lstm_beta=50_seed_0.json"


def test_a_rerun_reuses_finished_units_and_fresh_recomputes(tmp_path, monkeypatch):
    first = run_experiment("adding", "test", tmp_path)
    units = sorted(p.name for p in (tmp_path / "units").iterdir())
    assert units == ["adding-T30-elman.json", "adding-T30-lstm.json"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr("rnnlab.analysis.experiments.synthetic.train", no_training)
    again = run_experiment("adding", "test", tmp_path)
    assert again.rows == first.rows
    with pytest.raises(AssertionError, match="trained again"):
        run_experiment("adding", "test", tmp_path, fresh=True)
    with pytest.raises(AssertionError, match="trained again"):
        run_experiment("adding", "test", tmp_path, seeds=2)  # another configuration


def test_compare_and_regularizers_keep_their_units(tmp_path):
    result = run_experiment("regularizers", "test", tmp_path / "reg")
    again = run_experiment("regularizers", "test", tmp_path / "reg")
    assert again.rows == result.rows
    units = tmp_path / "reg" / "units"
    store = UnitStore(units, {})
    expected = {store.path(f"regularizers-{r['arm']}-seed0") for r in result.rows}
    assert expected == set(units.iterdir())


def test_units_trained_in_parallel_processes_equal_those_trained_in_turn(tmp_path):
    # latch: three units, and a task that is a functools.partial (it must pickle)
    alone = run_experiment("latch", "test", tmp_path / "one", seeds=2)
    (tmp_path / "two" / "units").mkdir(parents=True)
    kept = tmp_path / "two" / "units" / "latch-sgd-T20-elman.json"
    kept.write_bytes((tmp_path / "one" / "units" / kept.name).read_bytes())
    before = kept.stat().st_mtime_ns
    parallel = run_experiment("latch", "test", tmp_path / "two", seeds=2, jobs=2)
    assert parallel.rows == alone.rows
    assert kept.stat().st_mtime_ns == before  # a stored unit is read, not trained again
    for name in ("latch-sgd-T20-lstm-nofg.json", "latch-sgd-T20-additive.json"):
        one, two = (json.loads((tmp_path / d / "units" / name).read_text()) for d in ("one", "two"))
        del one["value"]["history"]["seconds"], two["value"]["history"]["seconds"]
        assert one == two  # every step's loss and gradient norm, not only the summary


def test_jobs_are_refused_where_an_experiment_cannot_use_them(tmp_path):
    with pytest.raises(RnnlabError, match="clipping runs in one process; --jobs works for latch"):
        run_experiment("clipping", "test", tmp_path / "c", jobs=2)
    with pytest.raises(RnnlabError, match="--jobs must be a positive integer"):
        run_experiment("adding", "test", tmp_path / "a", jobs=0)
    assert not (tmp_path / "c").exists() and not (tmp_path / "a").exists()

"""rnnlab viz over HTTP: every endpoint with good and bad input, against a real server, with
the figures checked against independent computations on the model."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.tasks.runner import load_run
from rnnlab.viz import finder, inspect
from rnnlab.viz.command import bind

PASSAGE = 'All:\n"Speak, speak." (rather) First Citizen:\nYou are all resolved'


def _events(url: str, **params) -> list[dict]:
    with httpx.stream("GET", f"{url}/api/sample", params=params, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("event: done\ndata: {}")
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith('data: {"')]


def test_run_info(lm_server: str) -> None:
    info = httpx.get(f"{lm_server}/api/run").json()
    assert info["task"] == "lm" and info["views"][:4] == ["text", "finder", "saturation", "sample"]
    assert [layer["gates"] for layer in info["layers"]] == [["i", "f", "g", "o", "c", "h"]] * 2
    assert len(info["passage"]) == 300 and info["parameters"] > 0 and not info["static"]
    assert info["config"]["model"]["rnn"]["hidden_size"] == 32


def test_the_page_and_its_assets_are_served(lm_server: str) -> None:
    page = httpx.get(f"{lm_server}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("app.js", "style.css"):
        assert httpx.get(f"{lm_server}/static/{asset}").status_code == 200


def test_a_passage_holds_every_activation_of_the_model(lm_server: str, lm_run: Path) -> None:
    summary = httpx.post(f"{lm_server}/api/passage", json={"text": PASSAGE}).json()
    T = len(PASSAGE)
    assert summary["chars"] == list(PASSAGE)
    run = load_run(lm_run)
    vocab = run.vocabs["tokens"]
    ids = torch.tensor([vocab.encode(list(PASSAGE))])
    with torch.no_grad():
        (logits, _), _ = run.model(ids)
        x = run.model.embedding(ids)
        h1, _ = run.model.rnn(x)  # the top layer's outputs
    logp = logits[0].log_softmax(-1)
    # the loss of each character and the five likeliest after it
    assert summary["loss"][0] is None
    for t in (1, 7, T - 1):
        assert summary["loss"][t] == pytest.approx(float(-logp[t - 1, ids[0, t]]), abs=1e-3)
    for t in (0, 10, T - 1):
        p, i = logp[t].exp().topk(5)
        assert [c for c, _ in summary["top5"][t]] == [vocab.itos[int(k)] for k in i]
        assert [q for _, q in summary["top5"][t]] == pytest.approx(p.tolist(), abs=1e-3)
    # the top layer's h block is the layer's output, to the quantisation step
    block = httpx.get(
        f"{lm_server}/api/block", params={"passage": summary["id"], "layer": 1, "gate": "h"}
    ).json()
    values = finder.dequantize(block)
    assert values.shape == (T, 32) and block["lo"] == -1.0 and block["hi"] == 1.0
    np.testing.assert_allclose(values, h1[0].numpy(), atol=1 / 255 + 1e-6)
    # every gate of every layer, sigmoid gates in [0, 1]
    assert {(b["layer"], b["gate"]) for b in summary["blocks"]} == {
        (layer, g) for layer in (0, 1) for g in "ifgoch"
    }
    for gate in "ifo":
        b = httpx.get(
            f"{lm_server}/api/block", params={"passage": summary["id"], "layer": 0, "gate": gate}
        ).json()
        assert (b["lo"], b["hi"]) == (0.0, 1.0)
    assert set(summary["saturation"]["layer0"]) == {"i", "f", "o"}
    assert len(summary["saturation"]["layer0"]["f"]["left"]) == 32
    assert set(summary["finder"]) == set(finder.ANNOTATIONS)
    assert len(summary["finder"]["line_position"]) == finder.TOP_UNITS


def test_annotations_of_a_text() -> None:
    a = finder.annotations(list('ab\n"Cd (e[f])" g'))
    assert a["line_position"].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert a["in_quotes"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert a["bracket_depth"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 1, 0, 0, 0]
    assert a["after_newline"].tolist() == [1, 0, 0, 1] + [0] * 12
    assert a["word_start"].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]
    assert a["capitalised"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_correlations_saturation_and_match_against_numpy() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((50, 6)).astype(np.float32)
    target = rng.random(50)
    values[:, 2] = 2 * target + 1  # perfectly correlated
    values[:, 4] = 0.5  # constant: r = 0, not NaN
    r = finder.correlations(values, target)
    expected = [np.corrcoef(values[:, k], target)[0, 1] for k in (0, 1, 2, 3, 5)]
    np.testing.assert_allclose(r[[0, 1, 2, 3, 5]], expected, atol=1e-9)
    assert r[4] == 0.0
    top = finder.rank_units({(0, "h"): values}, target, top=2)
    assert top[0] == {"layer": 0, "gate": "h", "unit": 2, "r": pytest.approx(1.0)}
    sat = finder.saturation(np.array([[0.05, 0.5], [0.95, 0.95], [0.0, 0.99], [0.5, 0.2]]))
    assert sat == {"left": [0.5, 0.0], "right": [0.25, 0.5]}
    units, on = finder.match(np.array([[1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 0, 1.0]]), 0, 2, 0.5)
    assert units == [0, 2] and on.tolist() == [True, True, False, True]


def test_quantisation_round_trips_within_one_step() -> None:
    values = np.linspace(-3, 5, 40, dtype=np.float32).reshape(8, 5)
    block = finder.quantize(values)
    assert (block["lo"], block["hi"]) == (-3.0, 5.0)
    np.testing.assert_allclose(finder.dequantize(block), values, atol=8 / 255 / 2 + 1e-6)


def test_sampling_streams_each_character_with_the_unit(lm_server: str, lm_run: Path) -> None:
    params = {"prime": "First", "length": 25, "temperature": 0.8, "seed": 3, "layer": 1,
              "gate": "h", "unit": 5}  # fmt: skip
    events = _events(lm_server, **params)
    assert [e["char"] for e in events[:5]] == list("First") and all(e["prime"] for e in events[:5])
    assert len(events) == 30 and not any(e["prime"] for e in events[5:])
    assert events == _events(lm_server, **params)  # seeded: the same sample
    # each value is the unit's h after reading that character
    run = load_run(lm_run)
    text = "".join(e["char"] for e in events)
    ids = torch.tensor([run.vocabs["tokens"].encode(list(text))])
    with torch.no_grad():
        out, _ = run.model.rnn(run.model.embedding(ids))
    assert [e["value"] for e in events] == pytest.approx(out[0, :, 5].tolist(), abs=2e-4)
    gated = _events(lm_server, prime="All", length=5, gate="f", unit=0, layer=0)
    assert all(0.0 <= e["value"] <= 1.0 for e in gated) and len(gated) == 8


def test_curves_come_from_the_run(lm_server: str) -> None:
    curves = httpx.get(f"{lm_server}/api/curves").json()
    assert curves["train"]["step"] == [5, 10, 15, 20, 25, 30]
    assert curves["eval"]["step"] == [10, 20, 30]
    assert all(math.isfinite(v) for v in curves["train"]["loss"] + curves["eval"]["loss"])


@pytest.mark.parametrize(
    "method,path,payload,status,message",
    [
        ("post", "/api/passage", {"text": "x" * 10_001}, 413, "more than 10000"),
        ("post", "/api/passage", {"text": ""}, 400, "text is empty"),
        ("post", "/api/passage", {"text": 12}, 400, "text must be a string"),
        ("post", "/api/passage", {"text": "@#~"}, 400, "not in the model's vocabulary"),
        ("post", "/api/passage", [1, 2], 400, "must be a JSON object"),
        ("get", "/api/block", {"passage": "p999", "layer": 0, "gate": "h"}, 404, "no passage"),
        ("get", "/api/block", {"passage": "p1", "layer": 7, "gate": "h"}, 400, "layer must be"),
        ("get", "/api/block", {"passage": "p1", "layer": "x", "gate": "h"}, 400, "an integer"),
        ("get", "/api/sample", {"prime": "a", "temperature": "nan"}, 400, "temperature must"),
        ("get", "/api/sample", {"prime": "a", "temperature": "11"}, 400, "temperature must"),
        ("get", "/api/sample", {"prime": "a", "top_k": 1000}, 400, "top_k must be in [1, 36]"),
        ("get", "/api/sample", {"prime": "a", "length": 2001}, 400, "length must be"),
        ("get", "/api/sample", {"prime": "a", "unit": 32}, 400, "unit must be in [0, 31]"),
        ("get", "/api/sample", {"prime": "a", "gate": "q"}, 400, "no gate 'q'"),
        ("get", "/api/sample", {"prime": "  "}, 400, "prime is empty"),
        ("post", "/api/translate", {"text": "a"}, 409, "needs a seq2seq run"),
        ("post", "/api/classify", {"text": "a"}, 409, "needs a classify run"),
        ("get", "/api/nosuch", {}, 404, "Not Found"),
        ("get", "/api/passage", {}, 405, "Method Not Allowed"),
    ],
)
def test_bad_requests_get_a_4xx_with_one_line(
    lm_server: str, method: str, path: str, payload, status: int, message: str
) -> None:
    if method == "post":
        response = httpx.post(f"{lm_server}{path}", json=payload)
    else:
        response = httpx.get(f"{lm_server}{path}", params=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in response.text


def test_not_json_is_a_400(lm_server: str) -> None:
    response = httpx.post(f"{lm_server}/api/passage", content=b"{not json")
    assert response.status_code == 400 and response.json() == {
        "error": "the request body is not JSON"
    }


@pytest.mark.parametrize(
    "raw", ["/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
            "/static//etc/passwd", "/static/%2Fetc%2Fpasswd", "/../../etc/passwd"],
)  # fmt: skip
def test_no_request_reads_a_file_outside_the_page(lm_server: str, raw: str) -> None:
    """Raw requests (no client-side normalisation of the path)."""
    host, port = lm_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {raw} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 404), reply[:300]
    assert b"root:" not in reply and b"create_app" not in reply


def test_translate_shows_attention_and_the_beam(seq2seq_server: str) -> None:
    info = httpx.get(f"{seq2seq_server}/api/run").json()
    assert info["views"] == ["translate", "curves", "config"]
    result = httpx.post(f"{seq2seq_server}/api/translate", json={"text": "1 2 3", "beam": 3}).json()
    assert result["source"] == ["1", "2", "3"] and result["target"][-1] == "<eos>"
    attention = np.array(result["attention"])
    assert attention.shape == (len(result["target"]), 3)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-3)
    scores = [h["score"] for h in result["hypotheses"]]
    assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True)
    bad = httpx.post(f"{seq2seq_server}/api/translate", json={"text": "1 2", "beam": 11})
    assert bad.status_code == 400 and "beam must be in [1, 10]" in bad.json()["error"]


def test_classify_shows_the_prediction_evolve(classify_server: str, classify_run: Path) -> None:
    result = httpx.post(f"{classify_server}/api/classify", json={"text": "Schmidt"}).json()
    probs = np.array(result["probs"])
    assert result["chars"] == list("Schmidt") and probs.shape == (7, len(result["labels"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    run = load_run(classify_run)
    ids = torch.tensor([run.vocabs["tokens"].encode(list("Sch"))])
    np.testing.assert_allclose(probs[2], run.model.predict_proba(ids)[0].numpy(), atol=1e-3)
    assert result["prediction"] == result["labels"][int(probs[-1].argmax())]


# -- the command -----------------------------------------------------------------------------------
def test_a_port_in_use_is_one_line(lm_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = bind("127.0.0.1", 0)
    try:
        code = main(["viz", str(lm_run), "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert code == 2 and "is in use: choose another with --port" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["viz", "{tmp}/none"], "none"),
        (["viz", "{run}", "--port", "70000"], "[0, 65535]"),
        (["viz", "{run}", "--host", "no.such.host.invalid"], "--host no.such.host.invalid"),
        (["viz", "{run}", "--data", "{tmp}/missing.txt"], "missing.txt"),
        (["viz", "{run}", "--static", "{tmp}"], "is a directory"),
        (["viz", "{run}", "--length", "0"], "[1, 10000]"),
    ],
)
def test_bad_command_lines_are_one_line(
    lm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv, message
) -> None:
    argv = [a.format(tmp=tmp_path, run=lm_run) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_corrupted_checkpoint_fails_before_the_server_starts(
    lm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(lm_run / "best", broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    assert main(["viz", str(broken), "--port", "0"]) == 2
    assert "rnnlab: error:" in capsys.readouterr().err


def test_the_static_page_is_one_file_with_its_data(static_page: Path) -> None:
    html = static_page.read_text()
    assert "/static/app.js" not in html and "/static/style.css" not in html
    start = html.index("window.RNNLAB_STATIC = ") + len("window.RNNLAB_STATIC = ")
    data = json.loads(html[start : html.index(";</script>", start)].replace("<\\/", "</"))
    assert data["run"]["static"] and len(data["passage"]["chars"]) == 200
    assert set(data["blocks"]) == {f"{layer}/{g}" for layer in (0, 1) for g in "ifgoch"}
    assert finder.dequantize(data["blocks"]["1/h"]).shape == (200, 32)


def _default_sigint() -> None:
    """In the child, Ctrl-C's default action: pytest-xdist's workers ignore SIGINT, a child
    inherits that through exec, and a SIGINT sent before uvicorn installs its handler would be
    lost (the server would then never stop)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_command_serves_until_interrupted(lm_run: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "viz", str(lm_run), "--port", "0", "--length", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, process.stderr.read()
        url = line[line.index("http://") : line.index("/ ", line.index("http://"))]
        assert httpx.get(f"{url}/api/run", timeout=30).json()["task"] == "lm"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stderr.read()
    finally:
        process.kill()


def test_another_host_must_be_asked_for_and_warns(lm_run: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "viz", str(lm_run), "--port", "0", "--host", "0.0.0.0",
         "--length", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert "http://0.0.0.0:" in line
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        assert "warning: serving on 0.0.0.0" in process.stderr.read()
    finally:
        process.kill()
    time.sleep(0)


def test_the_lstm_replay_equals_the_step_by_step_recording(lm_run: Path) -> None:
    """The fast path of the passage (the fused kernel, then all gates at once) against the
    reference loop with step hooks."""
    run = load_run(lm_run)
    ids = torch.tensor([run.vocabs["tokens"].encode(list(PASSAGE))])
    replayed = inspect._lstm_replay(run.model, ids)
    assert replayed is not None
    logits, blocks = replayed
    expected_logits, expected = inspect._recorded(run.model, ids)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-5)
    assert set(blocks) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(blocks[key], values, atol=1e-5, rtol=1e-5, err_msg=str(key))


def test_other_cells_are_recorded_step_by_step() -> None:
    from rnnlab.core.registry import RecurrentConfig
    from rnnlab.tasks.lm.model import RNNLM, LMConfig

    for cell in ("gru", "peephole"):
        model = RNNLM(LMConfig(vocab_size=9, embedding_size=4, rnn=RecurrentConfig(cell, 6)))
        assert inspect._lstm_replay(model, torch.tensor([[1, 2, 3]])) is None
        _, blocks = inspect._recorded(model.eval(), torch.tensor([[1, 2, 3]]))
        assert blocks[(0, "h")].shape == (3, 6)

"""The ``rnnlab viz`` web application: a Starlette app serving one loaded run (API.md).

Security: the app knows one run, loaded before it starts; no request names a file (the only
files served are the page's own assets, from the package, through Starlette's StaticFiles, which
refuses paths outside its folder). Every input is length- and range-checked; a bad request is a
4xx with ``{"error": "one line"}``, and an unexpected failure a 500 with one line, never a
traceback. The model runs one request at a time (a lock: recording hooks are per model).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rnnlab.errors import RnnlabError
from rnnlab.tasks.runner import Run
from rnnlab.viz import finder, inspect

STATIC = Path(__file__).resolve().parent / "static"
#: passages kept for the block requests (the oldest is dropped)
KEEP_PASSAGES = 8


class BadRequest(Exception):
    """A request the page should not have sent: 400 (or ``status``) with one line."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Viz:
    """What the app serves: the run, its views, the passages analysed so far."""

    run: Run
    out_dir: Path
    name: str
    passage: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    passages: OrderedDict[str, inspect.Passage] = field(default_factory=OrderedDict)
    counter: int = 0
    _layers: list[dict[str, Any]] | None = None

    @property
    def task(self) -> str:
        return self.run.task.name

    def views(self) -> list[str]:
        extra = {
            "lm": ["text", "finder", "saturation", "sample"],
            "seq2seq": ["translate"],
            "classify": ["classify"],
        }.get(self.task, [])
        return [*extra, "curves", "config"]

    def layers(self) -> list[dict[str, Any]]:
        if self._layers is None:
            with self.lock:
                self._layers = inspect.layer_gates(self.run)
        return self._layers

    def info(self, static: bool = False) -> dict[str, Any]:
        config_path = self.out_dir / "config.json"
        metrics_path = self.out_dir / "test_metrics.json"
        info: dict[str, Any] = {
            "task": self.task,
            "name": self.name,
            "title": f"a {self._cell()} {self.task} model",
            "config": _read_json(config_path) or self.run.meta.get("config") or {},
            "test_metrics": _read_json(metrics_path),
            "parameters": sum(p.numel() for p in self.run.model.parameters()),
            "views": self.views(),
            "limits": {
                "text": inspect.MAX_TEXT,
                "sample": inspect.MAX_SAMPLE,
                "beam": inspect.MAX_BEAM,
                "top_k": len(self.run.vocabs["tokens"]) if "tokens" in self.run.vocabs else 0,
            },
            "static": static,
        }
        if self.task == "lm":
            info["layers"] = self.layers()
            info["passage"] = self.passage
            rnn = self.run.model.rnn
            info["title"] = f"a {rnn.num_layers}x{rnn.hidden_size} {self._cell()} language model"
        return info

    def _cell(self) -> str:
        config = self.run.meta.get("model_config", {})
        config = config if isinstance(config, dict) else {}
        rnn = config.get("rnn", config.get("encoder", {}))
        return str(rnn.get("cell", "recurrent")) if isinstance(rnn, dict) else "recurrent"

    def analyse(self, text: str) -> inspect.Passage:
        with self.lock:
            self.counter += 1
            passage = inspect.analyse(self.run, text, f"p{self.counter}")
            self.passages[passage.id] = passage
            while len(self.passages) > KEEP_PASSAGES:
                self.passages.popitem(last=False)
        return passage

    def block(self, passage_id: str, layer: int, gate: str) -> dict[str, Any]:
        passage = self.passages.get(passage_id)
        if passage is None:
            raise BadRequest(f"no passage {passage_id!r} (analyse the text again)", 404)
        values = passage.blocks.get((layer, gate))
        if values is None:
            raise BadRequest(f"the run has no gate {gate!r} in layer {layer}", 404)
        return {"layer": layer, "gate": gate, **finder.quantize(values)}


# -- request parsing -----------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 4 * inspect.MAX_TEXT + 1024:
        raise BadRequest("the request is too large", 413)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _text(value: Any, name: str = "text") -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > inspect.MAX_TEXT:
        raise BadRequest(f"{name} has {len(value)} characters, more than {inspect.MAX_TEXT}", 413)
    if not value.strip():
        raise BadRequest(f"{name} is empty")
    return value


def _number(
    raw: Any, name: str, low: float, high: float, integer: bool = False, default: Any = None
) -> Any:
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"{name} is missing")
        return default
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name} must be {kind}, got {str(raw)[:40]!r}") from None
    if not low <= value <= high:  # also refuses NaN
        raise BadRequest(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return value


def _only(viz: Viz, task: str) -> None:
    if viz.task != task:
        raise BadRequest(f"this view needs a {task} run; this is a {viz.task} run", 409)


# -- endpoints ------------------------------------------------------------------------------------
def _viz(request: Request) -> Viz:
    return request.app.state.viz


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def run_info(request: Request) -> Response:
    return JSONResponse(_viz(request).info())


def passage(request: Request, body: dict[str, Any]) -> Response:
    viz = _viz(request)
    _only(viz, "lm")
    return JSONResponse(viz.analyse(_text(body.get("text"))).summary)


def _inline(function: Any) -> Any:
    """An endpoint running ``function(request, body)`` in the event loop's thread (the main
    thread under ``rnnlab viz``), as every model computation of the app does: torch's kernels
    ran about 2x slower in a worker thread here (oneDNN's LSTM over 2,000 steps: 180 ms instead
    of 85 per layer), and two threads each with its own OpenMP team oversubscribe the cores.
    The page is one user's, so holding the loop for the half second of an analysis costs
    nothing."""

    async def endpoint(request: Request) -> Response:
        body = await _body(request)
        return function(request, body)

    return endpoint


async def block(request: Request) -> Response:
    viz = _viz(request)
    _only(viz, "lm")
    q = request.query_params
    layer = _number(q.get("layer"), "layer", 0, len(viz.layers()) - 1, integer=True)
    return JSONResponse(viz.block(str(q.get("passage", "")), layer, str(q.get("gate", ""))))


async def sample(request: Request) -> Response:
    viz = _viz(request)
    _only(viz, "lm")
    q = request.query_params
    layers = viz.layers()
    prime = _text(q.get("prime", ""), "prime")
    temperature = _number(q.get("temperature"), "temperature", 0, 10, default=0.8)
    vocab = len(viz.run.vocabs["tokens"])
    top_k = q.get("top_k") or None
    if top_k is not None:
        top_k = _number(top_k, "top_k", 1, vocab, integer=True)
    length = _number(q.get("length"), "length", 1, inspect.MAX_SAMPLE, integer=True, default=300)
    layer = _number(q.get("layer"), "layer", 0, len(layers) - 1, integer=True, default=0)
    gate = str(q.get("gate") or "h")
    if gate not in layers[layer]["gates"]:
        raise BadRequest(f"the run has no gate {gate!r} in layer {layer}")
    unit = _number(q.get("unit"), "unit", 0, layers[layer]["size"] - 1, integer=True, default=0)
    seed = q.get("seed") or None
    if seed is not None:
        seed = _number(seed, "seed", 0, 2**63 - 1, integer=True)
    viz.run.vocabs["tokens"].encode(inspect.split(viz.run, prime))  # unknown characters: 400
    steps = inspect.sample(viz.run, prime, length, temperature, top_k, layer, gate, unit, seed)

    async def events() -> AsyncIterator[str]:
        while True:
            with viz.lock:  # one model step, in the loop's thread (see passage_endpoint)
                item = next(steps, None)
            if item is None:
                break
            yield f"data: {json.dumps(item)}\n\n"
            await asyncio.sleep(0)  # let the loop send it, and serve other requests
        yield "event: done\ndata: {}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def curves(request: Request) -> Response:
    return JSONResponse(inspect.curves(_viz(request).out_dir))


def translate(request: Request, body: dict[str, Any]) -> Response:
    viz = _viz(request)
    _only(viz, "seq2seq")
    text = _text(body.get("text"))
    beam = _number(body.get("beam"), "beam", 1, inspect.MAX_BEAM, integer=True, default=5)
    with viz.lock:
        return JSONResponse(inspect.translate(viz.run, text, beam))


def classify(request: Request, body: dict[str, Any]) -> Response:
    viz = _viz(request)
    _only(viz, "classify")
    text = _text(body.get("text"))
    with viz.lock:
        return JSONResponse(inspect.classify(viz.run, text))


# -- errors ---------------------------------------------------------------------------------------
async def bad_request(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status", 400)
    return JSONResponse({"error": " ".join(str(exc).split())}, status_code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "error"
    return JSONResponse({"error": detail}, status_code=exc.status_code)


async def internal_error(request: Request, exc: Exception) -> Response:
    line = " ".join(str(exc).split())[:200] or type(exc).__name__
    return JSONResponse({"error": f"internal error: {line}"}, status_code=500)


def create_app(run: Run, data: str | None = None, length: int = inspect.PASSAGE) -> Starlette:
    """The app for ``run``; ``data``: a text file for the default passage (else the run's
    validation split), ``length`` characters of it."""
    out_dir = run.task.out_dir(run)
    if run.task.name == "lm":
        if data is not None:
            from rnnlab.tasks.lm.data import read_corpus

            text = read_corpus(data)[:length]
        else:
            text = inspect.default_passage(run, length)
        unknown = run.vocabs["tokens"].unknown(inspect.split(run, text))
        if unknown:
            raise RnnlabError(
                f"the passage holds characters the model does not know: {''.join(unknown[:10])!r}"
            )
    else:
        text = ""
    viz = Viz(run, out_dir, out_dir.name, text)
    routes = [
        Route("/", index),
        Route("/api/run", run_info),
        Route("/api/passage", _inline(passage), methods=["POST"]),
        Route("/api/block", block),
        Route("/api/sample", sample),
        Route("/api/curves", curves),
        Route("/api/translate", _inline(translate), methods=["POST"]),
        Route("/api/classify", _inline(classify), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {
        BadRequest: bad_request,
        RnnlabError: bad_request,
        HTTPException: http_error,
        Exception: internal_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.viz = viz
    return app


def serve(app: Starlette, sock: Any) -> None:
    """Serve ``app`` on the listening socket ``sock`` until Ctrl-C."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


class Background:
    """``app`` served by uvicorn in a daemon thread on ``host:port`` (0: any free port), for
    tests and benchmarks: :attr:`url`, and :meth:`stop`."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        import time

        import uvicorn

        from rnnlab.viz.command import bind

        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RnnlabError(f"the viz server on {self.url} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


__all__ = ["STATIC", "Background", "BadRequest", "Viz", "create_app", "serve"]

"""``rnnlab viz RUN``: the options (torch-free, for the parser) and the command."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from rnnlab.config import Check, Config, option
from rnnlab.errors import RnnlabError
from rnnlab.tasks.runner import THREADS

#: ports a server may bind (0: any free port, printed)
PORT = Check(lambda v: 0 <= v <= 65535, "in [0, 65535]")
#: the longest passage a page may hold
MAX_LENGTH = 10_000
#: passage length of a static page unless --length is given (every activation is inlined)
STATIC_LENGTH = 600
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class VizOptions(Config):
    """Look inside a trained run in the browser: a local web application (text coloured by any
    unit, a unit finder, gate saturation, live sampling, training curves; attention for
    encoder-decoders, the evolving prediction of classifiers). Serves until Ctrl-C."""

    title = "viz"

    checkpoint: str = option(positional=True, metavar="RUN", help="a run directory or checkpoint")
    port: int = option(8000, check=PORT, help="the port to serve on (0: any free port)")
    host: str = option(
        "127.0.0.1", help="the address to bind (0.0.0.0 serves every network: asked for only)"
    )
    data: str | None = option(
        None, metavar="FILE", help="a text file for the language model's default passage "
        "(default: the run's validation split)"
    )  # fmt: skip
    length: int | None = option(
        None, check=Check(lambda v: 1 <= v <= MAX_LENGTH, f"in [1, {MAX_LENGTH}]"),
        help=f"characters of the default passage (2000; {STATIC_LENGTH} for --static)",
    )  # fmt: skip
    static: str | None = option(
        None, metavar="PAGE.html", help="write the views of the passage as one self-contained "
        "HTML file (no server) and exit"
    )  # fmt: skip
    device: str = option("cpu", help="cpu, cuda, cuda:1, ... or auto")
    threads: int | None = option(
        None, check=THREADS, help="torch CPU threads (default: the cores other processes "
        "leave free)"
    )  # fmt: skip


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a one-line error when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RnnlabError(f"--host {host}: not an address of this machine ({exc})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            raise RnnlabError(f"port {port} is in use: choose another with --port") from None
        raise RnnlabError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def viz(options: VizOptions) -> int:
    from rnnlab.machine import choose_threads
    from rnnlab.tasks.runner import check_writable, load_run, resolve_device
    from rnnlab.viz.server import create_app, serve

    if options.static is not None:
        check_writable(options.static, "--static", directory=False)
    choose_threads(options.threads)
    run = load_run(options.checkpoint, resolve_device(options.device))
    length = options.length or (STATIC_LENGTH if options.static else 2000)
    app = create_app(run, data=options.data, length=length)
    if options.static is not None:
        from rnnlab.viz.page import write_static

        path = write_static(app.state.viz, Path(options.static))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser")
        return 0
    sock = bind(options.host, options.port)
    if options.host not in LOCAL_HOSTS:
        print(
            f"rnnlab viz: warning: serving on {options.host}: anyone who can reach this machine "
            "can use the page and run the model",
            file=sys.stderr,
        )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"rnnlab viz: {run.task.name} run {app.state.viz.name} at http://{shown}:{port}/ "
          "(Ctrl-C stops)", flush=True)  # fmt: skip
    serve(app, sock)
    print("rnnlab viz: stopped", file=sys.stderr)
    return 0


__all__ = ["VizOptions", "bind", "viz"]

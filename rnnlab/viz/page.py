"""``rnnlab viz RUN --static PAGE.html``: the page with its data, assets and every activation of
one passage inlined, so that it opens from a file with no server (for sharing and the docs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import atomic_write_text
from rnnlab.viz import inspect
from rnnlab.viz.server import STATIC, Viz

STYLE_TAG = '<link rel="stylesheet" href="/static/style.css">'
SCRIPT_TAG = '<script src="/static/app.js"></script>'
DATA_TAG = '<script id="rnnlab-static"></script>'


def _script_json(data: Any) -> str:
    """JSON that cannot end the <script> element it is inlined in."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


def static_data(viz: Viz) -> dict[str, Any]:
    """What the static page shows: the run, its passage with every block, its curves."""
    data: dict[str, Any] = {"run": viz.info(static=True), "curves": inspect.curves(viz.out_dir)}
    if viz.task == "lm":
        passage = viz.analyse(viz.passage)
        data["passage"] = passage.summary
        data["blocks"] = {
            f"{layer}/{gate}": viz.block(passage.id, layer, gate)
            for layer, gate in sorted(passage.blocks)
        }
    return data


def render(viz: Viz) -> str:
    """The self-contained HTML page of ``viz``."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    for tag in (STYLE_TAG, SCRIPT_TAG, DATA_TAG):
        if tag not in html:
            raise RnnlabError(f"the page template has no {tag}: the package is damaged")
    style = (STATIC / "style.css").read_text(encoding="utf-8").replace("</", "<\\/")
    script = (STATIC / "app.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    data = _script_json(static_data(viz))
    html = html.replace(
        DATA_TAG, f'<script id="rnnlab-static">window.RNNLAB_STATIC = {data};</script>'
    )
    html = html.replace(STYLE_TAG, f"<style>\n{style}\n</style>")
    return html.replace(SCRIPT_TAG, f"<script>\n{script}\n</script>")


def write_static(viz: Viz, path: Path) -> Path:
    """Write the static page to ``path`` atomically; returns ``path``."""
    atomic_write_text(path, render(viz))
    return path


__all__ = ["render", "static_data", "write_static"]

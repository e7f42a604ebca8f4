"""What rnnlab viz's finder and saturation views find in a language-model run (docs/VISUALISE.md):
the units most correlated with each annotation over a validation passage, the gate saturation
summary, and a screenshot of the text view coloured by the best line-position unit.

Usage::

    python benchmarks/viz_findings.py RUN [--length 10000] [--screenshot docs/figures/viz-text.png]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--length", type=int, default=10_000)
    p.add_argument("--screenshot", help="write a PNG of the text view here")
    args = p.parse_args()
    from rnnlab.tasks.runner import load_run
    from rnnlab.viz import finder, inspect

    run = load_run(args.run, task="lm")
    text = inspect.default_passage(run, args.length)
    passage = inspect.analyse(run, text, "findings")
    marks = finder.annotations(passage.tokens)
    seconds, loss = passage.summary["seconds"], passage.summary["mean_loss"]
    print(f"{len(text)} characters of the validation split, analysed in {seconds:.2f} s; "
          f"mean loss {loss:.3f} nats")  # fmt: skip
    print("\n| annotation | share of positions | best units (layer, gate, unit: r) |")
    print("|---|---|---|")
    for name, values in marks.items():
        share = float((values > 0).mean())
        top = finder.rank_units(passage.blocks, values, top=3)
        units = "; ".join(f"{u['layer']} {u['gate']} {u['unit']}: {u['r']:+.2f}" for u in top)
        print(f"| {name} | {share:.1%} | {units} |")
    print("\n| layer | gate | units mostly right-saturated (> 0.9 more than half the time) "
          "| mostly left-saturated (< 0.1) | never saturated (< 10% either) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for (layer, gate), values in sorted(passage.blocks.items()):
        if gate in ("h", "c") or values.min() < 0:
            continue
        right, left = (values > 0.9).mean(axis=0), (values < 0.1).mean(axis=0)
        H = values.shape[1]
        never = int(((right < 0.1) & (left < 0.1)).sum())
        print(f"| {layer} | {gate} | {int((right > 0.5).sum())} of {H} | "
              f"{int((left > 0.5).sum())} of {H} | {never} of {H} |")  # fmt: skip
    best = finder.rank_units(passage.blocks, marks["line_position"], top=1)[0]
    series = passage.blocks[(best["layer"], best["gate"])][:, best["unit"]]
    newlines = np.array([t == "\n" for t in passage.tokens])
    print(f"\nline-position unit: layer {best['layer']} {best['gate']} {best['unit']}, "
          f"r = {best['r']:+.3f}; its mean value on newlines {series[newlines].mean():+.3f}, "
          f"elsewhere {series[~newlines].mean():+.3f}")  # fmt: skip
    if args.screenshot:
        screenshot(run, Path(args.screenshot))
    return 0


def screenshot(run, path: Path) -> None:
    """The text view of a 700-character passage coloured by the finder's first unit."""
    from playwright.sync_api import sync_playwright

    from rnnlab.viz.server import Background, create_app

    server = Background(create_app(run, length=700))
    url = server.url
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chrome.new_page(viewport={"width": 1100, "height": 760})
        page.goto(url)
        page.wait_for_selector("#passage .ch")
        page.click("#tab-finder")
        page.locator(".unit-link").first.click()
        page.wait_for_timeout(500)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        chrome.close()
    server.stop()
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

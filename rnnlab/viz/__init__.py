"""``rnnlab viz``: look inside a trained run in the browser.

:mod:`rnnlab.viz.inspect` computes what the page shows (activations, the unit finder, gate
saturation, samples, attention, evolving predictions, curves); :mod:`rnnlab.viz.server` serves it
(a Starlette app, the API in ``API.md``); :mod:`rnnlab.viz.page` writes the self-contained static
page; ``static/`` holds the page itself (plain HTML, CSS and JavaScript).
"""

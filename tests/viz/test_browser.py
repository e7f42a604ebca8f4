"""The viz page (rnnlab/viz/static) in a real browser: playwright driving the system Chromium
against a real server on a tiny trained language model, and the static page from a file.

Without Chromium or playwright these tests skip, with the reason; with ``CI`` set they fail, so
that a CI machine cannot pass them by not running them. Every test also fails on any JavaScript
error or console error of the page. Screenshots of the views go to build/viz-screenshots/.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "viz-screenshots"
NO_CHROMIUM = "no Chromium found: install it (apt-get install chromium) to run the browser tests"
NO_PLAYWRIGHT = "playwright is not installed: pip install playwright to run the browser tests"
# Chrome's own line for a 4xx answer, logged even though the page handles the answer.
HTTP_ERROR_LINE = re.compile(r"Failed to load resource: the server responded with a status of 4")
READY = "#passage[data-state=ready]"


# -- fixtures -------------------------------------------------------------------------------------
def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run there)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable(NO_PLAYWRIGHT)
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _unavailable(NO_CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def console() -> list[str]:
    """The page's JavaScript errors and console errors; a test that provokes one removes it."""
    return []


@pytest.fixture
def page(browser: Browser, console: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    yield page
    context.close()
    assert console == [], f"the page logged errors: {console}"


# -- helpers --------------------------------------------------------------------------------------
def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def open_text_view(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY)


def show(page: Page, view: str) -> None:
    page.click(f"#tab-{view}")
    page.wait_for_selector(f"#view-{view}", state="visible")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def backgrounds(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#passage .ch", "spans => spans.map(s => getComputedStyle(s).backgroundColor)"
    )


def select_unit(page: Page, layer: int, gate: str, unit: int) -> None:
    """Choose a unit with the text view's selectors and wait until the text shows it."""
    page.select_option("#layer-select", str(layer))
    page.select_option("#gate-select", gate)
    page.fill("#unit-input", str(unit))
    page.wait_for_selector(f'#passage[data-coloured-by="{layer}/{gate}/{unit}"][data-state=ready]')


def column(block: dict[str, Any], unit: int) -> bytes:
    data = base64.b64decode(block["data"])
    return data[unit :: block["H"]]


def match(
    block: dict[str, Any], start: int, end: int, threshold: float
) -> tuple[list[int], list[int]]:
    """API.md's match, by its definition: units above ``threshold`` all over [start, end), and
    the positions where all those units are above it together."""
    T, H, lo, hi = block["T"], block["H"], block["lo"], block["hi"]
    data = base64.b64decode(block["data"])
    above = [lo + (hi - lo) * b / 255 > threshold for b in range(256)]
    units = [u for u in range(H) if all(above[data[t * H + u]] for t in range(start, end))]
    positions = [t for t in range(T) if units and all(above[data[t * H + u]] for u in units)]
    return units, positions


# -- the language model's views -------------------------------------------------------------------
def test_text_view_shows_one_span_per_character(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    open_text_view(page, lm_server)
    texts = page.eval_on_selector_all("#passage .ch", "spans => spans.map(s => s.textContent)")
    assert len(texts) == len(run["passage"])
    assert "".join(texts).replace("↵", "\n") == run["passage"]
    assert page.inner_text("#run-name") == run["name"]
    assert f"{run['parameters']:,}" in page.inner_text("#run-parameters")
    colours = backgrounds(page)
    assert len(set(colours)) > 1, "the text is not coloured by the unit"
    screenshot(page, "text")


def test_two_thousand_spans_render_well_under_100_ms(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    text = (run["passage"] * (2000 // len(run["passage"]) + 1))[:2000]
    open_text_view(page, lm_server)
    page.click("#analyse-box summary")
    page.fill("#analyse-text", text)
    page.click("#analyse-button")
    page.wait_for_function("document.querySelectorAll('#passage .ch').length === 2000")
    page.wait_for_selector(READY)
    build = float(page.get_attribute("#passage", "data-build-ms"))
    colour = float(page.get_attribute("#passage", "data-colour-ms"))
    assert build + colour < 100, f"building took {build} ms and colouring {colour} ms"
    # Recolouring by another unit only sets backgrounds: fast as well.
    before = backgrounds(page)
    layer = int(page.input_value("#layer-select"))
    gate = page.input_value("#gate-select")
    unit = (int(page.input_value("#unit-input")) + 1) % run["layers"][layer]["size"]
    select_unit(page, layer, gate, unit)
    assert float(page.get_attribute("#passage", "data-colour-ms")) < 100
    assert backgrounds(page) != before


def test_colour_by_loss(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    loss = post_json(f"{lm_server}/api/passage", {"text": run["passage"]})["loss"]
    open_text_view(page, lm_server)
    page.check("#loss-toggle")
    page.wait_for_selector('#passage[data-coloured-by="loss"][data-state=ready]')
    colours = backgrounds(page)
    assert colours[0] == "rgba(0, 0, 0, 0)"  # nothing predicts the first character
    # darker (a smaller sum of red, green, blue) where the model was more surprised
    darkness = [-sum(map(int, re.findall(r"\d+", c)[:3])) for c in colours[1:]]
    surprised = max(range(1, len(loss)), key=lambda t: loss[t])
    confident = min(range(1, len(loss)), key=lambda t: loss[t])
    assert darkness[surprised - 1] > darkness[confident - 1]
    page.uncheck("#loss-toggle")
    page.wait_for_selector("#passage:not([data-coloured-by=loss])[data-state=ready]")


def test_hover_shows_the_top5_and_the_loss(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    expected = post_json(f"{lm_server}/api/passage", {"text": run["passage"]})
    open_text_view(page, lm_server)
    page.locator("#passage .ch").nth(9).hover()
    page.wait_for_selector("#tooltip", state="visible")
    rows = page.locator("#tooltip .top5-row")
    assert rows.count() == 5
    probabilities = [float(p) for p in page.locator("#tooltip .top5-p").all_inner_texts()]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert probabilities == sorted(probabilities, reverse=True)
    top5 = sorted(expected["top5"][9], key=lambda pair: -pair[1])
    assert page.locator("#tooltip .top5-p").all_inner_texts() == [f"{p:.3f}" for _, p in top5]
    shown = {"\n": "↵", " ": "␣"}
    assert page.locator("#tooltip .top5-char").all_inner_texts() == [
        shown.get(c, c) for c, _ in top5
    ]
    loss = page.inner_text("#tooltip .char-loss")
    assert f"{expected['loss'][9]:.3f}" in loss
    page.mouse.move(1, 1)  # leaving the text hides the tooltip
    page.wait_for_selector("#tooltip", state="hidden")


def test_finder_link_selects_its_unit_and_recolours(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    passage = post_json(f"{lm_server}/api/passage", {"text": run["passage"]})
    open_text_view(page, lm_server)
    show(page, "finder")
    link = page.locator(".unit-link").first
    layer, gate = int(link.get_attribute("data-layer")), link.get_attribute("data-gate")
    unit = int(link.get_attribute("data-unit"))
    # First show another unit of the same block whose values differ from the link's.
    block = get_json(f"{lm_server}/api/block?passage={passage['id']}&layer={layer}&gate={gate}")
    other = next(u for u in range(block["H"]) if column(block, u) != column(block, unit))
    show(page, "text")
    select_unit(page, layer, gate, other)
    before = backgrounds(page)
    show(page, "finder")
    screenshot(page, "finder")
    link.click()
    page.wait_for_selector("#view-text", state="visible")
    page.wait_for_selector(f'#passage[data-coloured-by="{layer}/{gate}/{unit}"][data-state=ready]')
    assert page.input_value("#unit-input") == str(unit)
    assert page.input_value("#layer-select") == str(layer)
    assert page.input_value("#gate-select") == gate
    after = backgrounds(page)
    assert after != before
    # the colours follow the link's unit: one colour per byte of its column
    pairs = set(zip(column(block, unit), after, strict=True))
    assert len(pairs) == len({b for b, _ in pairs})


def test_match_lists_units_and_marks_positions(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    passage = post_json(f"{lm_server}/api/passage", {"text": run["passage"]})
    open_text_view(page, lm_server)
    layer = int(page.input_value("#layer-select"))
    gate = page.input_value("#gate-select")
    block = get_json(f"{lm_server}/api/block?passage={passage['id']}&layer={layer}&gate={gate}")
    # A threshold equal to a value in the span, so that "exceeds" (>) is told from >=: the
    # highest quantile of the span's values at which some unit still qualifies.
    span = sorted(base64.b64decode(block["data"])[: 3 * block["H"]])
    for q in (0.5, 0.25, 0.1, 0.0):
        b = span[int(q * (len(span) - 1))]
        threshold = block["lo"] + (block["hi"] - block["lo"]) * b / 255
        units, positions = match(block, 0, 3, threshold)
        if units:
            break
    assert units, "no unit of the test block exceeds even the span's lowest value"
    show(page, "finder")
    page.fill("#match-start", "0")
    page.fill("#match-end", "3")
    page.fill("#match-threshold", repr(threshold))
    page.click("#match-button")
    page.wait_for_selector("#match-units .match-unit")
    assert [int(u) for u in page.locator("#match-units .match-unit").all_inner_texts()] == units
    marked = page.eval_on_selector_all(
        "#passage .match-on", "spans => spans.map(s => +s.dataset.t)"
    )
    assert marked == positions
    assert {0, 1, 2} <= set(marked)  # the span itself always matches

    # A mouse selection of the characters 4..6 fills the span [4, 7).
    page.evaluate(
        """() => {
            const spans = document.querySelectorAll('#passage .ch');
            const range = document.createRange();
            range.setStart(spans[4].firstChild, 0);
            range.setEnd(spans[6].firstChild, spans[6].firstChild.length);
            getSelection().removeAllRanges();
            getSelection().addRange(range);
            const up = new MouseEvent('mouseup', {bubbles: true});
            document.getElementById('passage').dispatchEvent(up);
        }"""
    )
    assert (page.input_value("#match-start"), page.input_value("#match-end")) == ("4", "7")


def test_sample_streams_characters(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    open_text_view(page, lm_server)
    show(page, "sample")
    prime = "Citizen"  # characters the tiny model knows (it has never seen "ROMEO:")
    assert prime in run["passage"]
    page.fill("#sample-prime", prime)
    page.fill("#sample-length", "40")
    page.click("#sample-button")
    page.wait_for_function(
        "document.querySelectorAll('#sample-output .ch').length >= 20", timeout=10_000
    )
    # the stream ends by itself: the prime, then 40 characters
    page.wait_for_function("!document.getElementById('sample-button').disabled", timeout=20_000)
    assert page.locator("#sample-output .ch").count() == len(prime) + 40
    assert page.locator("#sample-output .ch.prime").count() == len(prime)
    assert page.is_disabled("#sample-stop")
    assert page.locator("#error-bar").is_hidden()
    screenshot(page, "sample")


def test_saturation_and_curves_are_drawn(page: Page, lm_server: str) -> None:
    run = get_json(f"{lm_server}/api/run")
    passage = post_json(f"{lm_server}/api/passage", {"text": run["passage"]})
    curves = get_json(f"{lm_server}/api/curves")
    open_text_view(page, lm_server)

    show(page, "saturation")
    plots = page.locator("svg.saturation-plot")
    pairs = [(name, g) for name, gates in passage["saturation"].items() for g in gates]
    assert pairs, "the tiny LSTM has sigmoid gates"
    assert plots.count() == len(pairs)
    sizes = {layer["name"]: layer["size"] for layer in run["layers"]}
    for k, (name, _) in enumerate(pairs):
        assert plots.nth(k).locator("circle.dot").count() == sizes[name]
    screenshot(page, "saturation")

    show(page, "curves")
    page.wait_for_selector("svg.curve-plot path.line.train")
    assert page.locator("svg.curve-plot").count() == 2
    assert curves["eval"]["loss"], "the tiny run was evaluated"
    # each chart: one marker per evaluation, plus one in the legend
    markers = page.locator("svg.curve-plot").first.locator("circle.marker.eval").count()
    assert markers == len(curves["eval"]["loss"]) + 1
    screenshot(page, "curves")


def test_api_errors_show_in_the_error_bar(page: Page, console: list[str], lm_server: str) -> None:
    open_text_view(page, lm_server)
    page.click("#analyse-box summary")
    page.fill("#analyse-text", "☃☃☃")  # not in the tiny model's vocabulary
    page.click("#analyse-button")
    page.wait_for_selector("#error-bar", state="visible")
    assert page.inner_text("#error-text").strip()
    assert page.locator("#passage .ch").count() > 3  # the old passage stays
    # Chrome logs the 400 itself; that line is expected, and must be the only one.
    assert console and all(HTTP_ERROR_LINE.search(line) for line in console), console
    console.clear()
    page.click("#error-close")
    assert page.locator("#error-bar").is_hidden()


def test_sample_error_shows_the_reason(page: Page, console: list[str], lm_server: str) -> None:
    open_text_view(page, lm_server)
    show(page, "sample")
    page.fill("#sample-prime", "ROMEO:")  # R, O, M, E: the tiny model has never seen them
    page.click("#sample-button")
    page.wait_for_selector("#error-bar", state="visible")
    assert re.search(r"/api/sample: .*(unknown|know|vocab)", page.inner_text("#error-text"), re.I)
    assert not page.is_disabled("#sample-button")
    assert console and all(HTTP_ERROR_LINE.search(line) for line in console), console
    console.clear()


def test_static_page_needs_no_network(page: Page, static_page: Path) -> None:
    url = static_page.resolve().as_uri()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_text_view(page, url)
    passage = page.evaluate("Array.from(window.RNNLAB_STATIC.run.passage).length")
    assert page.locator("#passage .ch").count() == passage
    page.locator("#passage .ch").nth(9).hover()
    assert page.locator("#tooltip .top5-row").count() == 5
    for view, drawn in [
        ("finder", ".unit-link"),
        ("saturation", "svg.saturation-plot"),
        ("curves", "svg.curve-plot"),
        ("config", "table.kv"),
    ]:
        show(page, view)
        page.wait_for_selector(f"#view-{view} {drawn}")
    screenshot(page, "config")
    show(page, "sample")
    assert "sampling needs the server" in page.inner_text("#sample-note")
    assert page.is_disabled("#sample-button")
    assert requests == [url]


# -- the other tasks' views -----------------------------------------------------------------------
def test_translate_shows_attention_and_hypotheses(page: Page, seq2seq_server: str) -> None:
    page.goto(seq2seq_server)
    show(page, "translate")
    page.fill("#translate-text", "1 2 3")
    page.fill("#translate-beam", "3")
    page.click("#translate-button")
    page.wait_for_selector(".hypotheses")
    answer = post_json(f"{seq2seq_server}/api/translate", {"text": "1 2 3", "beam": 3})
    assert page.locator(".hypotheses tr").count() == len(answer["hypotheses"]) + 1
    if answer["attention"] is None:
        assert page.locator(".attention-grid").count() == 0
    else:
        cells = len(answer["target"]) * len(answer["source"])
        assert page.locator(".attention-grid .cell").count() == cells
    screenshot(page, "translate")


def test_classify_shows_the_prediction_evolve(page: Page, classify_server: str) -> None:
    page.goto(classify_server)
    show(page, "classify")
    page.fill("#classify-text", "Schmidt")
    page.click("#classify-button")
    page.wait_for_selector(".class-evolution .evo-row")
    answer = post_json(f"{classify_server}/api/classify", {"text": "Schmidt"})
    assert page.locator(".class-evolution .evo-row").count() == len(answer["chars"])
    assert page.locator(".class-evolution .evo-row .stack").first.locator(".part").count() == 3
    assert answer["prediction"] in page.inner_text("#classify-output")
    screenshot(page, "classify")

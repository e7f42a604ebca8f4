// rnnlab viz: the page. It talks to the server through the API of rnnlab/viz/API.md, or, on a
// static page, reads the same answers from window.RNNLAB_STATIC and makes no request at all.
// One file without a build step, because the static page inlines exactly this file.
"use strict";

(() => {
  const STATIC = window.RNNLAB_STATIC || null;
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    run: null,
    passage: null, // the answer of POST /api/passage
    spans: [], // one <span class="ch"> per character of the passage
    lossColours: [], // background of each character when colouring by loss
    lossTop: 1, // the loss shown darkest
    blocks: new Map(), // "PASSAGE/LAYER/GATE" -> Promise of a decoded block
    decoded: new Map(), // the same keys -> the blocks that have arrived, for synchronous reads
    layer: 0,
    gate: "h",
    unit: 0,
    byLoss: false,
    colourToken: 0, // the latest recolour wins when block requests overlap
    matchOn: [], // spans marked by the last match
    view: null,
    curvesShown: false,
    sample: null, // {source, count} of the open sample stream
  };

  // ---------------------------------------------------------------- errors and the API

  /** An error the API answered (or the page found in its input): shown in the bar, not logged. */
  class ApiError extends Error {}

  function showError(err) {
    $("error-text").textContent = err && err.message ? err.message : String(err);
    $("error-bar").hidden = false;
    // A bug in this page, unlike an answer of the API, also goes to the console, where it is seen.
    if (!(err instanceof ApiError)) console.error(err);
  }

  /** Wraps an event handler so that whatever it throws lands in the error bar. */
  const guard = (handler) => async (...args) => {
    try {
      await handler(...args);
    } catch (err) {
      showError(err);
    }
  };

  async function request(method, path, body) {
    const init = { method };
    if (body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(`cannot reach the server (${method} ${path}): ${err.message}`);
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      // not JSON: reported below
    }
    if (!response.ok) {
      const why = payload && payload.error ? payload.error : `HTTP ${response.status}`;
      throw new ApiError(`${path.split("?")[0]}: ${why}`);
    }
    if (payload === null) throw new ApiError(`${path.split("?")[0]}: the answer is not JSON`);
    return payload;
  }

  function needsServer(what) {
    throw new ApiError(`${what} needs the server: run rnnlab viz RUN`);
  }

  const api = {
    run: async () => (STATIC ? STATIC.run : request("GET", "/api/run")),
    passage: async (text) =>
      STATIC ? needsServer("analysing new text") : request("POST", "/api/passage", { text }),
    block: async (passageId, layer, gate) => {
      if (!STATIC) {
        const query = new URLSearchParams({ passage: passageId, layer, gate });
        return request("GET", `/api/block?${query}`);
      }
      const block = STATIC.blocks[`${layer}/${gate}`];
      if (!block) throw new ApiError(`this static page holds no block for layer ${layer}, gate ${gate}`);
      return block;
    },
    curves: async () => (STATIC ? STATIC.curves : request("GET", "/api/curves")),
    translate: async (text, beam) =>
      STATIC ? needsServer("translating") : request("POST", "/api/translate", { text, beam }),
    classify: async (text) =>
      STATIC ? needsServer("classifying") : request("POST", "/api/classify", { text }),
  };

  // ---------------------------------------------------------------- colours

  const WHITE = [255, 255, 255];
  const BLUE = [49, 110, 190];
  const RED = [205, 45, 40];
  const ORANGE = [240, 130, 20];
  const PURPLE = [130, 60, 170];

  function mix(to, amount) {
    const a = Math.min(1, Math.max(0, amount));
    const c = WHITE.map((w, i) => Math.round(w + (to[i] - w) * a));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  /** value -> CSS colour: diverging around 0 when lo < 0, else white to orange over [lo, hi]. */
  function colourScale(lo, hi) {
    if (lo < 0) {
      const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
      return (v) => (v < 0 ? mix(BLUE, -v / m) : mix(RED, v / m));
    }
    const width = hi - lo || 1;
    return (v) => mix(ORANGE, (v - lo) / width);
  }

  function legend(lo, hi, loss) {
    const box = $("legend");
    let ends;
    let gradient;
    if (loss) {
      ends = ["0 nats", `${hi.toFixed(1)} nats`];
      gradient = `linear-gradient(to right, ${mix(PURPLE, 0)}, ${mix(PURPLE, 1)})`;
    } else if (lo < 0) {
      const m = Math.max(Math.abs(lo), Math.abs(hi));
      ends = [fmt(-m), fmt(m)];
      gradient = `linear-gradient(to right, ${mix(BLUE, 1)}, #fff, ${mix(RED, 1)})`;
    } else {
      ends = [fmt(lo), fmt(hi)];
      gradient = `linear-gradient(to right, #fff, ${mix(ORANGE, 1)})`;
    }
    const bar = el("span", { class: "legend-bar" });
    bar.style.background = gradient;
    box.replaceChildren(el("span", {}, ends[0]), bar, el("span", {}, ends[1]));
  }

  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3).replace(/\.?0+$/, ""));

  // ---------------------------------------------------------------- small DOM helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    node.append(...children);
    return node;
  }

  function svgEl(tag, attrs = {}, parent = null, text = null) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  /** How a character is shown: newline as ↵, other control characters as their pictures. */
  function shown(c) {
    if (c === "\n") return "↵";
    const code = c.codePointAt(0);
    return code < 32 ? String.fromCodePoint(0x2400 + code) : c;
  }

  /** How a character is named on its own (the tooltip): a space as ␣, else as in the text. */
  const named = (c) => (c === " " ? "␣" : shown(c));

  /** Appends one coloured character span (and a line break after a newline) to a node. */
  function charSpan(c, parent) {
    const span = document.createElement("span");
    span.className = c === "\n" ? "ch nl" : "ch";
    span.textContent = shown(c);
    parent.appendChild(span);
    if (c === "\n") parent.appendChild(document.createElement("br"));
    return span;
  }

  function intIn(input, lo, hi, name) {
    const raw = input.value.trim();
    const v = Number(raw);
    if (raw === "" || !Number.isInteger(v) || v < lo || v > hi) {
      throw new ApiError(`${name} must be an integer in [${lo}, ${hi}], got "${raw}"`);
    }
    return v;
  }

  function numberIn(input, lo, hi, name) {
    const raw = input.value.trim();
    const v = Number(raw);
    if (raw === "" || !Number.isFinite(v) || v < lo || v > hi) {
      throw new ApiError(`${name} must be a number in [${lo}, ${hi}], got "${raw}"`);
    }
    return v;
  }

  // ---------------------------------------------------------------- blocks

  function decodeBlock(json) {
    const binary = atob(json.data);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    if (bytes.length !== json.T * json.H) {
      throw new ApiError(
        `block ${json.layer}/${json.gate}: expected T*H = ${json.T * json.H} bytes, got ${bytes.length}`
      );
    }
    const { lo, hi } = json;
    const scale = colourScale(lo, hi);
    // Every value of a block is lo + (hi - lo) * byte / 255: 256 colours, computed once.
    const colours = Array.from({ length: 256 }, (_, b) => scale(lo + ((hi - lo) * b) / 255));
    return { layer: json.layer, gate: json.gate, T: json.T, H: json.H, lo, hi, bytes, colours };
  }

  function getBlock(layer, gate) {
    const key = `${state.passage.id}/${layer}/${gate}`;
    if (!state.blocks.has(key)) {
      const promise = api.block(state.passage.id, layer, gate).then((json) => {
        const block = decodeBlock(json);
        if (block.T !== state.passage.chars.length) {
          throw new ApiError(
            `block ${layer}/${gate} has ${block.T} positions, the passage ${state.passage.chars.length}`
          );
        }
        state.decoded.set(key, block);
        return block;
      });
      promise.catch(() => state.blocks.delete(key)); // a failed request may be retried
      state.blocks.set(key, promise);
    }
    return state.blocks.get(key);
  }

  // ---------------------------------------------------------------- text view

  function renderPassage() {
    const started = performance.now();
    const box = $("passage");
    const fragment = document.createDocumentFragment();
    state.spans = state.passage.chars.map((c, t) => {
      const span = charSpan(c, fragment);
      span.dataset.t = t;
      return span;
    });
    box.replaceChildren(fragment);
    state.matchOn = [];
    void box.offsetHeight; // force the layout, so that the time below includes it
    box.dataset.buildMs = (performance.now() - started).toFixed(1);

    const losses = state.passage.loss.filter((v) => v !== null && Number.isFinite(v));
    const sorted = [...losses].sort((a, b) => a - b);
    // The 98th percentile, so that one surprising character does not wash out all the others.
    const top = sorted.length ? sorted[Math.floor(0.98 * (sorted.length - 1))] || 1 : 1;
    state.lossTop = top;
    state.lossColours = state.passage.loss.map((v) => (v === null ? "" : mix(PURPLE, v / top)));
  }

  async function recolour() {
    const token = ++state.colourToken;
    const box = $("passage");
    box.dataset.state = "colouring";
    let key;
    let colours;
    let index;
    if (state.byLoss) {
      key = "loss";
      colours = state.lossColours;
      index = (t) => t;
      legend(0, state.lossTop, true);
    } else {
      const block = await getBlock(state.layer, state.gate);
      if (token !== state.colourToken) return;
      const { bytes, H } = block;
      const u = state.unit;
      key = `${state.layer}/${state.gate}/${u}`;
      colours = block.colours;
      index = (t) => bytes[t * H + u];
      let [lo, hi] = [block.lo, block.hi];
      if (lo < -1 || hi > 1) {
        // An unbounded block (the cell state c): the block's range would wash one unit out,
        // so colour by this unit's own range.
        let low = 255;
        let high = 0;
        for (let t = 0; t < block.T; t++) {
          const b = bytes[t * H + u];
          if (b < low) low = b;
          if (b > high) high = b;
        }
        const value = (b) => block.lo + ((block.hi - block.lo) * b) / 255;
        [lo, hi] = [value(low), value(high)];
        const scale = colourScale(lo, hi);
        colours = Array.from({ length: 256 }, (_, b) => scale(value(b)));
      }
      legend(lo, hi, false);
    }
    const started = performance.now();
    const spans = state.spans;
    for (let t = 0; t < spans.length; t++) spans[t].style.backgroundColor = colours[index(t)];
    void box.offsetHeight;
    box.dataset.colourMs = (performance.now() - started).toFixed(1);
    box.dataset.colouredBy = key;
    box.dataset.state = "ready";
  }

  function fillLayerSelect() {
    const select = $("layer-select");
    select.replaceChildren(
      ...state.run.layers.map((l, i) => el("option", { value: i }, `${l.name} (${l.size})`))
    );
  }

  /** Shows state.layer / gate / unit in the selectors. */
  function syncSelectors() {
    const layer = state.run.layers[state.layer];
    $("layer-select").value = String(state.layer);
    $("gate-select").replaceChildren(...layer.gates.map((g) => el("option", { value: g }, g)));
    $("gate-select").value = state.gate;
    const unit = $("unit-input");
    unit.max = layer.size - 1;
    unit.value = String(state.unit);
    unit.classList.remove("invalid");
    $("unit-max").textContent = `of 0…${layer.size - 1}`;
    $("match-block").textContent = `on layer ${state.layer}, gate ${state.gate} (chosen in the text view)`;
  }

  /** Colours the text by one unit: what the selectors, the finder and the plots call. */
  async function selectUnit(layer, gate, unit) {
    const info = state.run.layers[layer];
    if (!info || !info.gates.includes(gate) || unit < 0 || unit >= info.size) {
      throw new ApiError(`no unit ${unit} in layer ${layer}, gate ${gate}`);
    }
    if (layer !== state.layer || gate !== state.gate) clearMatch();
    Object.assign(state, { layer, gate, unit, byLoss: false });
    $("loss-toggle").checked = false;
    syncSelectors();
    await recolour();
  }

  function defaultUnit() {
    const first = Object.values(state.passage.finder || {}).find((units) => units.length);
    if (first) return first[0];
    const gates = state.run.layers[0].gates;
    return { layer: 0, gate: gates.includes("c") ? "c" : gates.includes("h") ? "h" : gates[0], unit: 0 };
  }

  async function loadPassage(passage) {
    const T = passage.chars.length;
    if (passage.loss.length !== T || passage.top5.length !== T) {
      throw new ApiError(`the passage has ${T} characters but ${passage.loss.length} losses`);
    }
    const first = state.passage === null;
    state.passage = passage;
    renderPassage();
    renderFinder();
    renderSaturation();
    $("match-summary").textContent = "";
    $("match-units").replaceChildren();
    if (first) {
      const { layer, gate, unit } = defaultUnit();
      await selectUnit(layer, gate, unit);
    } else {
      await recolour();
    }
  }

  async function analyse() {
    const text = $("analyse-text").value;
    const n = [...text].length;
    if (n === 0) throw new ApiError("paste some text to analyse first");
    if (n > state.run.limits.text) {
      throw new ApiError(`the text has ${n} characters, at most ${state.run.limits.text} are analysed`);
    }
    $("analyse-note").textContent = "running the model…";
    try {
      const passage = await api.passage(text);
      await loadPassage(passage);
      $("analyse-note").textContent = `${n} characters analysed in ${passage.seconds.toFixed(2)} s`;
    } catch (err) {
      $("analyse-note").textContent = "";
      throw err;
    }
  }

  // ---------------------------------------------------------------- tooltip

  function showTooltip(t, span) {
    const p = state.passage;
    const tip = $("tooltip");
    const loss = p.loss[t];
    const next = p.chars[t + 1];
    const rows = [...p.top5[t]].sort((a, b) => b[1] - a[1]).map(([c, prob]) => {
      const bar = el("span", { class: "top5-bar" });
      bar.style.width = `${(100 * prob).toFixed(1)}%`;
      const row = el(
        "div",
        { class: c === next ? "top5-row actual" : "top5-row" },
        el("span", { class: "top5-char" }, named(c)),
        el("span", { class: "top5-track" }, bar),
        el("span", { class: "top5-p" }, prob.toFixed(3))
      );
      return row;
    });
    const children = [
      el("div", { class: "tip-head" }, `t = ${t} · `, el("b", {}, named(p.chars[t]))),
      el(
        "div",
        { class: "char-loss" },
        loss === null ? "loss: — (nothing predicts the first character)" : `loss: ${loss.toFixed(3)} nats`
      ),
    ];
    const value = unitValue(t);
    if (value !== null) children.push(el("div", { class: "char-value" }, value));
    children.push(el("div", { class: "tip-sub" }, "after it the model expects"), ...rows);
    tip.replaceChildren(...children);
    tip.hidden = false;
    const r = span.getBoundingClientRect();
    const { width, height } = tip.getBoundingClientRect();
    const below = r.bottom + 6 + height < window.innerHeight;
    tip.style.top = `${below ? r.bottom + 6 : Math.max(4, r.top - 6 - height)}px`;
    tip.style.left = `${Math.max(4, Math.min(r.left, window.innerWidth - width - 8))}px`;
  }

  /** "unit 17 (layer 0, c): 0.412" once the block is here, else null: hovering never waits. */
  function unitValue(t) {
    if (state.byLoss) return null;
    const block = state.decoded.get(`${state.passage.id}/${state.layer}/${state.gate}`);
    if (!block) return null;
    const v = block.lo + ((block.hi - block.lo) * block.bytes[t * block.H + state.unit]) / 255;
    return `unit ${state.unit} (layer ${state.layer}, ${state.gate}): ${v.toFixed(3)}`;
  }

  // ---------------------------------------------------------------- finder and match

  function renderFinder() {
    const lists = $("finder-lists");
    const fragment = document.createDocumentFragment();
    for (const [name, units] of Object.entries(state.passage.finder || {})) {
      const list = el("ol", { class: "unit-list" });
      for (const u of units) {
        const link = el(
          "button",
          {
            type: "button",
            class: "unit-link",
            "data-layer": u.layer,
            "data-gate": u.gate,
            "data-unit": u.unit,
          },
          `layer ${u.layer} · ${u.gate} · unit ${u.unit} · r=${u.r.toFixed(2)}`
        );
        list.appendChild(el("li", {}, link));
      }
      const body = units.length ? list : el("p", { class: "muted" }, "never in this passage");
      fragment.append(el("div", { class: "finder-group" }, el("h3", {}, name.replaceAll("_", " ")), body));
    }
    if (!fragment.childNodes.length) fragment.append(el("p", { class: "muted" }, "no annotations"));
    lists.replaceChildren(fragment);
  }

  function clearMatch() {
    for (const span of state.matchOn) span.classList.remove("match-on");
    state.matchOn = [];
    $("match-units").replaceChildren();
    $("match-summary").textContent = "";
  }

  /**
   * LSTMVis's match: the units above `threshold` at every position of [start, end), and the
   * positions where all of them are above it together. Values compare exactly as decoded.
   */
  function matchSpan(block, start, end, threshold) {
    const { bytes, H, T, lo, hi } = block;
    const above = Array.from({ length: 256 }, (_, b) => lo + ((hi - lo) * b) / 255 > threshold);
    const units = [];
    for (let u = 0; u < H; u++) {
      let all = true;
      for (let t = start; t < end && all; t++) all = above[bytes[t * H + u]];
      if (all) units.push(u);
    }
    const positions = [];
    if (units.length) {
      for (let t = 0; t < T; t++) {
        if (units.every((u) => above[bytes[t * H + u]])) positions.push(t);
      }
    }
    return { units, positions };
  }

  async function runMatch() {
    const T = state.passage.chars.length;
    const start = intIn($("match-start"), 0, T - 1, "start");
    const end = intIn($("match-end"), start + 1, T, "end");
    const threshold = numberIn($("match-threshold"), -Infinity, Infinity, "threshold");
    const block = await getBlock(state.layer, state.gate);
    clearMatch();
    const { units, positions } = matchSpan(block, start, end, threshold);
    for (const t of positions) state.spans[t].classList.add("match-on");
    state.matchOn = positions.map((t) => state.spans[t]);
    const where = `layer ${state.layer}, ${state.gate}`;
    $("match-summary").textContent = units.length
      ? `${units.length} of ${block.H} units (${where}) exceed ${threshold} on [${start}, ${end}); ` +
        `all of them together at ${positions.length} positions (underlined)`
      : `no unit (${where}) exceeds ${threshold} at every position of [${start}, ${end})`;
    $("match-units").replaceChildren(
      ...units.map((u) =>
        el("button", { type: "button", class: "match-unit", "data-unit": u, title: "colour the text by it" }, u)
      )
    );
  }

  /** A mouse selection in the passage fills the match's start and end. */
  function selectionToMatch() {
    const selection = window.getSelection();
    if (!selection || selection.isCollapsed || !selection.rangeCount) return;
    const range = selection.getRangeAt(0);
    const index = (node, offset, isEnd) => {
      const span = (node.nodeType === Node.TEXT_NODE ? node.parentElement : node).closest(".ch");
      if (!span || !$("passage").contains(span)) return null;
      const t = Number(span.dataset.t);
      if (node.nodeType !== Node.TEXT_NODE) return isEnd ? t + 1 : t;
      // A range that ends before a character's text, or starts after it, leaves it out.
      if (isEnd) return offset === 0 ? t : t + 1;
      return offset >= node.length ? t + 1 : t;
    };
    const start = index(range.startContainer, range.startOffset, false);
    const end = index(range.endContainer, range.endOffset, true);
    if (start === null || end === null || end <= start) return;
    $("match-start").value = start;
    $("match-end").value = end;
  }

  // ---------------------------------------------------------------- saturation

  function renderSaturation() {
    const box = $("saturation-plots");
    const fragment = document.createDocumentFragment();
    for (const [layerName, gates] of Object.entries(state.passage.saturation || {})) {
      let layer = state.run.layers.findIndex((l) => l.name === layerName);
      if (layer < 0) layer = Number(layerName.replace(/\D/g, ""));
      for (const [gate, fractions] of Object.entries(gates)) {
        fragment.append(saturationPlot(layer, layerName, gate, fractions));
      }
    }
    if (!fragment.childNodes.length) fragment.append(el("p", { class: "muted" }, "no sigmoid gates"));
    box.replaceChildren(fragment);
  }

  function saturationPlot(layer, layerName, gate, { left, right }) {
    const size = 250;
    const m = { l: 46, r: 12, t: 12, b: 40 };
    const w = size - m.l - m.r;
    const h = size - m.t - m.b;
    const svg = svgEl("svg", {
      class: "saturation-plot",
      width: size,
      height: size,
      viewBox: `0 0 ${size} ${size}`,
      role: "img",
      "aria-label": `saturation of ${layerName} gate ${gate}`,
    });
    const x = (v) => m.l + v * w;
    const y = (v) => m.t + (1 - v) * h;
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      svgEl("line", { class: "grid", x1: x(v), x2: x(v), y1: y(0), y2: y(1) }, svg);
      svgEl("line", { class: "grid", x1: x(0), x2: x(1), y1: y(v), y2: y(v) }, svg);
      if (v === 0.25 || v === 0.75) continue;
      svgEl("text", { class: "tick", x: x(v), y: y(0) + 14, "text-anchor": "middle" }, svg, `${v}`);
      svgEl("text", { class: "tick", x: x(0) - 5, y: y(v) + 4, "text-anchor": "end" }, svg, `${v}`);
    }
    svgEl("rect", { class: "frame", x: x(0), y: y(1), width: w, height: h }, svg);
    const label = { class: "axis-label", "text-anchor": "middle" };
    svgEl("text", { ...label, x: x(0.5), y: size - 6 }, svg, "fraction right-saturated (> 0.9)");
    const turned = `translate(12 ${y(0.5)}) rotate(-90)`;
    svgEl("text", { ...label, transform: turned }, svg, "fraction left-saturated (< 0.1)");
    right.forEach((r, u) => {
      const dot = svgEl("circle", { class: "dot", cx: x(r), cy: y(left[u]), r: 3, "data-unit": u }, svg);
      svgEl("title", {}, dot, `unit ${u}: right ${r.toFixed(2)}, left ${left[u].toFixed(2)}`);
    });
    svg.addEventListener(
      "click",
      guard(async (event) => {
        const dot = event.target.closest("circle.dot");
        if (!dot) return;
        showView("text");
        await selectUnit(layer, gate, Number(dot.dataset.unit));
      })
    );
    const caption = el("figcaption", {}, `${layerName} · ${gate} (${right.length} units)`);
    return el("figure", { class: "plot" }, svg, caption);
  }

  // ---------------------------------------------------------------- line charts (curves)

  /** Round ticks from a step of 1, 2 or 5 times a power of ten, covering [lo, hi]. */
  function niceTicks(lo, hi, count = 5) {
    if (!(hi > lo)) hi = lo + 1;
    const rough = (hi - lo) / count;
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    const r = rough / magnitude;
    const step = (r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1) * magnitude;
    const ticks = [];
    for (let k = Math.floor(lo / step); k <= Math.ceil(hi / step - 1e-9); k++) {
      ticks.push(Number((k * step).toPrecision(12)));
    }
    return ticks;
  }

  /** [min, max] by a loop: Math.min(...values) overflows the stack on long training logs. */
  function extent(values) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  }

  const tickLabel = (v) =>
    Math.abs(v) >= 1e6 ? `${v / 1e6}M` : Math.abs(v) >= 1e4 ? `${v / 1e3}k` : `${Number(v.toPrecision(4))}`;

  /** An SVG line chart: series = [{name, xs, ys, markers, cls}]. */
  function lineChart({ title, xLabel, yLabel, series }) {
    const W = 560;
    const H = 300;
    const m = { l: 56, r: 16, t: 28, b: 44 };
    const points = series.map((s) =>
      s.xs.map((x, i) => [x, s.ys[i]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
    );
    const all = points.flat();
    const svg = svgEl("svg", {
      class: "curve-plot",
      width: W,
      height: H,
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": title,
    });
    svgEl("text", { class: "plot-title", x: m.l, y: 16 }, svg, title);
    if (!all.length) {
      const centre = { class: "tick", x: W / 2, y: H / 2, "text-anchor": "middle" };
      svgEl("text", centre, svg, "nothing recorded yet");
      return svg;
    }
    const xTicks = niceTicks(...extent(all.map((p) => p[0])));
    const yTicks = niceTicks(...extent(all.map((p) => p[1])));
    const [x0, x1] = [xTicks[0], xTicks.at(-1)];
    const [y0, y1] = [yTicks[0], yTicks.at(-1)];
    const x = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
    const y = (v) => H - m.b - ((v - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
    for (const v of xTicks) {
      svgEl("line", { class: "grid", x1: x(v), x2: x(v), y1: y(y0), y2: y(y1) }, svg);
      svgEl("text", { class: "tick", x: x(v), y: H - m.b + 15, "text-anchor": "middle" }, svg, tickLabel(v));
    }
    for (const v of yTicks) {
      svgEl("line", { class: "grid", x1: x(x0), x2: x(x1), y1: y(v), y2: y(v) }, svg);
      svgEl("text", { class: "tick", x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, svg, tickLabel(v));
    }
    svgEl("rect", { class: "frame", x: x(x0), y: y(y1), width: x(x1) - x(x0), height: y(y0) - y(y1) }, svg);
    const label = { class: "axis-label", "text-anchor": "middle" };
    svgEl("text", { ...label, x: (m.l + W - m.r) / 2, y: H - 8 }, svg, xLabel);
    const turned = `translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)`;
    svgEl("text", { ...label, transform: turned }, svg, yLabel);
    series.forEach((s, k) => {
      const pts = points[k];
      if (!pts.length) return;
      // At most ~3,000 vertices: more are finer than the pixels of a 560-pixel-wide chart.
      const stride = Math.ceil(pts.length / 3000);
      const kept = pts.filter((_, i) => i % stride === 0 || i === pts.length - 1);
      const d = kept.map(([a, b], i) => `${i ? "L" : "M"}${x(a).toFixed(1)} ${y(b).toFixed(1)}`).join("");
      svgEl("path", { class: `line ${s.cls}`, d }, svg);
      if (s.markers) {
        for (const [a, b] of pts) svgEl("circle", { class: `marker ${s.cls}`, cx: x(a), cy: y(b), r: 3.5 }, svg);
      }
      const ly = m.t + 4 + 16 * k;
      svgEl("line", { class: `line ${s.cls}`, x1: W - m.r - 130, x2: W - m.r - 108, y1: ly, y2: ly }, svg);
      if (s.markers) svgEl("circle", { class: `marker ${s.cls}`, cx: W - m.r - 119, cy: ly, r: 3.5 }, svg);
      svgEl("text", { class: "legend-text", x: W - m.r - 102, y: ly + 4 }, svg, s.name);
    });
    return svg;
  }

  async function showCurves() {
    const curves = await api.curves();
    const minutes = extent([0, ...curves.train.elapsed_s, ...curves.eval.elapsed_s])[1] > 300;
    const time = (xs) => (minutes ? xs.map((s) => s / 60) : xs);
    const chart = (xKey, xLabel, scale) =>
      lineChart({
        title: `loss against ${xKey === "step" ? "step" : "time"}`,
        xLabel,
        yLabel: "loss (nats)",
        series: [
          { name: "training", cls: "train", xs: scale(curves.train[xKey]), ys: curves.train.loss },
          {
            name: "validation",
            cls: "eval",
            markers: true,
            xs: scale(curves.eval[xKey]),
            ys: curves.eval.loss,
          },
        ],
      });
    $("curves-plots").replaceChildren(
      chart("step", "step", (xs) => xs),
      chart("elapsed_s", minutes ? "elapsed (min)" : "elapsed (s)", time)
    );
  }

  // ---------------------------------------------------------------- sampling

  function stopSample(note) {
    if (state.sample) state.sample.source.close();
    state.sample = null;
    $("sample-button").disabled = false;
    $("sample-stop").disabled = true;
    if (note) $("sample-note").textContent = note;
  }

  function startSample() {
    stopSample();
    const limits = state.run.limits;
    const length = intIn($("sample-length"), 1, limits.sample, "length");
    const temperature = numberIn($("sample-temperature"), 0, 10, "temperature");
    const topK = $("sample-topk").value.trim() === "" ? "" : intIn($("sample-topk"), 1, limits.top_k, "top-k");
    const seed = $("sample-seed").value.trim() === "" ? "" : intIn($("sample-seed"), 0, 2 ** 31 - 1, "seed");
    const { layer, gate, unit } = state;
    const query = new URLSearchParams({
      prime: $("sample-prime").value, temperature, top_k: topK, length, layer, gate, unit, seed,
    });
    const info = (state.passage.blocks || []).find((b) => b.layer === layer && b.gate === gate);
    const colour = info ? colourScale(info.lo, info.hi) : colourScale(-1, 1);
    const out = $("sample-output");
    out.replaceChildren();
    const url = `/api/sample?${query}`;
    const source = new EventSource(url);
    const sample = { source, count: 0 };
    state.sample = sample;
    $("sample-button").disabled = true;
    $("sample-stop").disabled = false;
    const what = `coloured by unit ${unit} of layer ${layer}, ${gate}`;
    $("sample-note").textContent = `sampling… (${what})`;
    source.onmessage = (event) => {
      if (state.sample !== sample) return;
      const d = JSON.parse(event.data);
      const span = charSpan(d.char, out);
      if (d.prime) span.classList.add("prime");
      span.style.backgroundColor = colour(d.value);
      span.title = `${d.value.toFixed(3)}`;
      sample.count += 1;
    };
    source.addEventListener("done", () => {
      if (state.sample === sample) stopSample(`${sample.count} characters, ${what}`);
    });
    source.onerror = guard(async () => {
      if (state.sample !== sample) return;
      stopSample(`stopped after ${sample.count} characters`);
      if (sample.count) throw new ApiError(`the sample stream broke off after ${sample.count} characters`);
      await explainSampleFailure(url);
    });
  }

  /** An EventSource cannot read an error's body: ask once more with fetch to show the reason. */
  async function explainSampleFailure(url) {
    const abort = new AbortController();
    const response = await fetch(url, { signal: abort.signal }).catch(() => null);
    if (response && !response.ok) {
      const payload = await response.json().catch(() => null);
      const why = payload && payload.error ? payload.error : `HTTP ${response.status}`;
      throw new ApiError(`/api/sample: ${why}`);
    }
    abort.abort();
    throw new ApiError("/api/sample: the stream could not be opened");
  }

  // ---------------------------------------------------------------- translate and classify

  async function translate() {
    const text = $("translate-text").value.trim();
    if (!text) throw new ApiError("type a sentence to translate");
    const beam = intIn($("translate-beam"), 1, state.run.limits.beam, "beam");
    const r = await api.translate(text, beam);
    const out = [el("p", { class: "translation" }, r.target.filter((w) => w !== "<eos>").join(" "))];
    if (r.attention) {
      const grid = el("div", { class: "attention-grid" });
      grid.style.gridTemplateColumns = `auto repeat(${r.source.length}, minmax(2.5em, auto))`;
      grid.append(el("span", { class: "corner" }));
      for (const s of r.source) grid.append(el("span", { class: "src" }, s));
      r.target.forEach((word, i) => {
        grid.append(el("span", { class: "tgt" }, word));
        r.attention[i].forEach((w, j) => {
          const cell = el("span", { class: "cell", title: `${word} ← ${r.source[j]}: ${w.toFixed(3)}` });
          cell.style.backgroundColor = mix(BLUE, w);
          grid.append(cell);
        });
      });
      out.push(el("h3", {}, "attention (rows: target, columns: source)"), grid);
    } else {
      out.push(el("p", { class: "muted" }, "this model has no attention"));
    }
    const head = el("tr", {}, el("th", {}, "#"), el("th", {}, "hypothesis"), el("th", {}, "score"));
    const hypotheses = el("table", { class: "hypotheses" }, head);
    r.hypotheses.forEach((hyp, i) => {
      const score = el("td", { class: "num" }, hyp.score.toFixed(3));
      hypotheses.append(el("tr", {}, el("td", {}, `${i + 1}`), el("td", {}, hyp.tokens.join(" ")), score));
    });
    out.push(el("h3", {}, `beam hypotheses (beam ${beam})`), hypotheses);
    $("translate-output").replaceChildren(...out);
  }

  // Tableau 20: one colour per class of up to 20 (the names task has 18).
  const PALETTE = [
    "#4e79a7", "#a0cbe8", "#f28e2b", "#ffbe7d", "#59a14f", "#8cd17d", "#b6992d", "#f1ce63",
    "#499894", "#86bcb6", "#e15759", "#ff9d9a", "#79706e", "#bab0ac", "#d37295", "#fabfd2",
    "#b07aa1", "#d4a6c8", "#9d7660", "#d7b5a6",
  ];

  async function classify() {
    const text = $("classify-text").value;
    if (!text.trim()) throw new ApiError("type a name to classify");
    const r = await api.classify(text);
    const evolution = el("div", { class: "class-evolution" });
    r.probs.forEach((probs, t) => {
      const top = probs.map((p, c) => [p, c]).sort((a, b) => b[0] - a[0]).slice(0, 3);
      const bar = el("span", { class: "stack" });
      for (const [p, c] of top) {
        const part = el("span", { class: "part", title: `${r.labels[c]} ${p.toFixed(3)}` });
        part.style.width = `${(100 * p).toFixed(1)}%`;
        part.style.backgroundColor = PALETTE[c % PALETTE.length];
        bar.append(part);
      }
      const words = top.map(([p, c]) => `${r.labels[c]} ${p.toFixed(2)}`).join(" · ");
      const prefix = el("span", { class: "prefix" }, r.chars.slice(0, t + 1).join(""));
      evolution.append(el("div", { class: "evo-row" }, prefix, bar, el("span", { class: "muted" }, words)));
    });
    $("classify-output").replaceChildren(el("p", {}, "prediction: ", el("b", {}, r.prediction)), evolution);
  }

  // ---------------------------------------------------------------- config

  function flatten(value, prefix, rows) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, rows);
    } else {
      const shownValue =
        typeof value === "number" ? Number(value.toPrecision(6))
        : typeof value === "string" ? value
        : JSON.stringify(value);
      rows.push([prefix, shownValue]);
    }
    return rows;
  }

  function table(rows) {
    const tr = ([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, `${v}`));
    return el("table", { class: "kv" }, ...rows.map(tr));
  }

  function renderConfig() {
    const run = state.run;
    const parts = [el("h2", {}, "test metrics")];
    parts.push(
      run.test_metrics
        ? table(flatten(run.test_metrics, "", []))
        : el("p", { class: "muted" }, "no test metrics (the run has not been tested)")
    );
    parts.push(el("h2", {}, "config"), table(flatten(run.config, "", [])));
    $("config-output").replaceChildren(...parts);
  }

  // ---------------------------------------------------------------- tabs and start

  function showView(name) {
    if (!state.run.views.includes(name)) name = state.run.views[0];
    state.view = name;
    for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
    for (const tab of document.querySelectorAll("#tabs button")) {
      tab.setAttribute("aria-selected", String(tab.dataset.view === name));
    }
    // One passage on the page, shown in whichever of the two views that use it is open.
    const slot = { text: "text-slot", finder: "finder-slot" }[name];
    if (slot && state.passage) {
      $(slot).appendChild($("passage"));
      $("passage").hidden = false;
    }
    $("tooltip").hidden = true;
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    if (name === "curves" && !state.curvesShown) {
      state.curvesShown = true;
      guard(showCurves)();
    }
  }

  function renderHeader() {
    const run = state.run;
    $("run-name").textContent = run.name;
    $("run-title").textContent = run.title ? `— ${run.title}` : "";
    $("run-parameters").textContent =
      `${run.task} · ${run.parameters.toLocaleString("en-US")} parameters` + (STATIC ? " · static page" : "");
    document.title = `${run.name} · rnnlab viz`;
    $("tabs").replaceChildren(
      ...run.views.map((v) => el("button", { type: "button", role: "tab", id: `tab-${v}`, "data-view": v }, v))
    );
  }

  function wire() {
    $("error-close").addEventListener("click", () => ($("error-bar").hidden = true));
    $("tabs").addEventListener("click", (event) => {
      const tab = event.target.closest("button[data-view]");
      if (tab) showView(tab.dataset.view);
    });
    $("layer-select").addEventListener(
      "change",
      guard(async () => {
        const layer = Number($("layer-select").value);
        const gates = state.run.layers[layer].gates;
        const gate = gates.includes(state.gate) ? state.gate : gates[0];
        await selectUnit(layer, gate, Math.min(state.unit, state.run.layers[layer].size - 1));
      })
    );
    $("gate-select").addEventListener(
      "change",
      guard(() => selectUnit(state.layer, $("gate-select").value, state.unit))
    );
    $("unit-input").addEventListener(
      "input",
      guard(async () => {
        const input = $("unit-input");
        const v = Number(input.value);
        const ok = input.value !== "" && Number.isInteger(v) && v >= 0 && v < state.run.layers[state.layer].size;
        input.classList.toggle("invalid", !ok);
        if (ok) await selectUnit(state.layer, state.gate, v);
      })
    );
    $("loss-toggle").addEventListener(
      "change",
      guard(async () => {
        state.byLoss = $("loss-toggle").checked;
        await recolour();
      })
    );
    $("analyse-button").addEventListener("click", guard(analyse));

    const passage = $("passage");
    passage.addEventListener("mouseover", (event) => {
      const span = event.target.closest(".ch");
      if (span) showTooltip(Number(span.dataset.t), span);
    });
    passage.addEventListener("mouseleave", () => ($("tooltip").hidden = true));
    // on the document: a drag that starts in the passage may end outside it
    document.addEventListener("mouseup", selectionToMatch);

    const pick = async (event, selector, from) => {
      const link = event.target.closest(selector);
      if (!link) return;
      const { layer, gate } = from(link);
      showView("text");
      await selectUnit(layer, gate, Number(link.dataset.unit));
    };
    $("finder-lists").addEventListener(
      "click",
      guard((e) => pick(e, ".unit-link", (l) => ({ layer: Number(l.dataset.layer), gate: l.dataset.gate })))
    );
    $("match-units").addEventListener(
      "click",
      guard((e) => pick(e, ".match-unit", () => ({ layer: state.layer, gate: state.gate })))
    );
    $("match-button").addEventListener("click", guard(runMatch));

    $("sample-button").addEventListener("click", guard(startSample));
    $("sample-stop").addEventListener("click", () =>
      stopSample(state.sample ? `stopped after ${state.sample.count} characters` : "")
    );
    $("translate-button").addEventListener("click", guard(translate));
    $("classify-button").addEventListener("click", guard(classify));
    for (const [input, button] of [["translate-text", "translate-button"], ["classify-text", "classify-button"]]) {
      $(input).addEventListener("keydown", (e) => e.key === "Enter" && $(button).click());
    }
  }

  async function boot() {
    wire();
    state.run = await api.run();
    renderHeader();
    const views = state.run.views;
    if (views.includes("text")) {
      fillLayerSelect();
      if (STATIC) {
        const serverOnly = ["analyse-button", "analyse-text", "sample-button", "sample-prime"];
        serverOnly.push("sample-temperature", "sample-topk", "sample-length", "sample-seed");
        for (const id of serverOnly) $(id).disabled = true;
        $("analyse-note").textContent = "analysing new text needs the server: run rnnlab viz RUN";
        $("sample-note").replaceChildren("sampling needs the server: run ", el("code", {}, "rnnlab viz RUN"));
      } else {
        $("sample-length").max = state.run.limits.sample;
      }
      $("analyse-text").value = (state.run.passage || "").slice(0, 200);
      const passage = STATIC ? STATIC.passage : await api.passage(state.run.passage);
      await loadPassage(passage);
    }
    if (views.includes("translate")) $("translate-beam").max = state.run.limits.beam;
    if (views.includes("config")) renderConfig();
    showView(location.hash.slice(1));
  }

  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    showError(event.reason);
  });
  boot()
    .catch(showError)
    .finally(() => ($("loading").hidden = true));
})();

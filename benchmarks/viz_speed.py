"""Speed of ``rnnlab viz`` on a language-model run (docs/VISUALISE.md): the real command serving
in another process, measured over HTTP and in headless Chromium.

* the passage: POST /api/passage of the default 2,000-character passage (every gate and state of
  every layer, the losses, top 5, annotations, finder, saturation) and GET /api/block of one
  (layer, gate), server time;
* in the browser: from opening the page to the 2,000 characters shown coloured by a unit;
* sampling: from the request to the first sampled character (after the prime), and characters
  per second over the stream.

Usage::

    python benchmarks/viz_speed.py RUN [--repeats 5] [--threads 1] [--chars 500]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chars", type=int, default=500)
    args = p.parse_args()
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rnnlab", "viz", args.run, "--port", "0"]
    command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    line = server.stdout.readline()  # "rnnlab viz: lm run NAME at http://127.0.0.1:PORT/ ..."
    url = line[line.index("http://") :].split()[0].rstrip("/")
    client = httpx.Client(timeout=120)
    info = client.get(f"{url}/api/run").json()
    text = info["passage"]
    passage, block, first, rate = [], [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        summary = client.post(f"{url}/api/passage", json={"text": text}).json()
        passage.append(time.perf_counter() - start)
        start = time.perf_counter()
        client.get(f"{url}/api/block", params={"passage": summary["id"], "layer": 1, "gate": "c"})
        block.append(time.perf_counter() - start)
        params = {"prime": "ROMEO:", "length": args.chars, "temperature": 0.8, "gate": "c",
                  "layer": 1, "unit": 0, "seed": 0}  # fmt: skip
        start = time.perf_counter()
        seen, t_first = 0, None
        with client.stream("GET", f"{url}/api/sample", params=params) as response:
            for line in response.iter_lines():
                if line.startswith('data: {"') and '"prime": false' in line:
                    seen += 1
                    if t_first is None:
                        t_first = time.perf_counter()
        end = time.perf_counter()
        first.append(t_first - start)
        rate.append((seen - 1) / (end - t_first))
    print(f"{len(text)}-character passage, {info['title']}, {args.threads} thread(s), "
          f"median of {args.repeats}:")  # fmt: skip
    ms = {k: statistics.median(v) * 1000 for k, v in (("passage", passage), ("block", block))}
    print(f"  POST /api/passage (every activation, finder, saturation): {ms['passage']:.0f} ms "
          f"(server: {summary['seconds'] * 1000:.0f} ms)")  # fmt: skip
    print(f"  GET /api/block (one layer and gate, all units): {ms['block']:.0f} ms")
    print(
        f"  sampling: first character after {statistics.median(first) * 1000:.0f} ms, "
        f"then {statistics.median(rate):.0f} characters/s"
    )
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:
        from playwright.sync_api import sync_playwright

        shown = []
        with sync_playwright() as pw:
            chrome = pw.chromium.launch(executable_path=browser, args=["--no-sandbox"])
            page = chrome.new_page()
            for _ in range(args.repeats):
                start = time.perf_counter()
                page.goto(url)
                page.wait_for_function(
                    "n => document.querySelectorAll('#passage .ch').length >= n "
                    "&& document.querySelector('#passage .ch').style.backgroundColor !== ''",
                    arg=len(text),
                    timeout=60_000,
                )
                shown.append(time.perf_counter() - start)
            chrome.close()
        print(f"  in Chromium: page opened to {len(text)} coloured characters shown: "
              f"{statistics.median(shown) * 1000:.0f} ms")  # fmt: skip
    server.terminate()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

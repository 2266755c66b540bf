"""Screenshots TensorBoard with headless Chromium: the proof that the panels show.

Starts a TensorBoard server on 127.0.0.1 for `--logdir`, opens it in headless
Chromium (Debian's `chromium` package: `apt-get install chromium`) and writes a
PNG of the Time Series dashboard filtered to the evaluation image panels and the
per-class IoU scalars.

    .venv/bin/python tools/tensorboard_screenshot.py --logdir=runs/synthetic \\
        --output=docs/tensorboard.png
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

DEFAULT_FILTER = r"images/index|iou/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"TensorBoard did not answer at {url} within {timeout:g} s")


def _wait_for_tags(base: str, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/data/plugin/images/tags", timeout=5) as response:
                if json.loads(response.read()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("TensorBoard loaded no image tags: is --logdir an eval directory with panels?")


def _chromium_screenshot(chromium, profile, url, output, width, height, wait_ms):
    # The flags keep Chromium off the network (this machine has none) and quiet.
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={os.path.abspath(output)}",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=180,
    )


def _has_content(path: str) -> bool:
    """Whether the cards area holds drawn pixels (images, lines), not just white cards."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("L"), np.float32)
    height, width = pixels.shape
    cards = pixels[int(0.1 * height) : int(0.9 * height), int(0.21 * width) : int(0.83 * width)]
    return float((cards < 120).mean()) > 0.01


def screenshot(logdir: str, output: str, tag_filter: str = DEFAULT_FILTER, width=1600, height=1800, wait_ms=15000):
    """Writes a PNG of TensorBoard's Time Series tab for `logdir`; returns `output`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise RuntimeError("no chromium on PATH: apt-get install chromium")
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    port = _free_port()
    server = subprocess.Popen(
        [tensorboard, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(base + "/data/logdir", timeout=60)
        _wait_for_tags(base, timeout=60)  # The event files are loaded: the page will have data.
        query = urllib.request.quote(tag_filter)
        # forceSVG: draw the charts as SVG; headless Chromium has no WebGL for them.
        url = f"{base}/?forceSVG=true&tagFilter={query}#timeseries"
        # The page fetches its data after it loads; when Chromium's virtual-time budget
        # runs out first, the cards are blank. Try again, waiting longer each time.
        for attempt in range(5):
            _chromium_screenshot(chromium, profile, url, output, width, height, wait_ms * (attempt + 1))
            if _has_content(output):
                break
        else:
            raise RuntimeError(f"TensorBoard's cards stayed empty in {output}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--output", default="tensorboard.png")
    parser.add_argument("--tag_filter", default=DEFAULT_FILTER)
    args = parser.parse_args(argv)
    print(screenshot(args.logdir, args.output, args.tag_filter))


if __name__ == "__main__":
    main()

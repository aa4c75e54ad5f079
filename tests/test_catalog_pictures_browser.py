"""Pictures of neurons in a real browser: `circuits catalog serve` on loopback, its "Pictures of neurons" page
loaded in headless Chromium, and the pictures checked where the user sees them.

Two checks, each against the PNGs the test made itself: the DOM after load has one ``<img>`` per picture whose
``data:`` URI decodes to exactly the stored bytes (in the query's order), and the screenshot holds every
stored picture, pixel for pixel (so it was decoded and painted, not just linked). Skipped where no Chromium
is installed (``apt-get install chromium``); CI machines have none, and test_catalog_pictures.py checks the
same page's HTML in-process there.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import io
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from pngs import CHECKER, GRADIENT
from serving import fetch_json, free_port, start_serve, stop_group

from circuits.catalog import Catalog

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium) to load the page in")
SHA = hashlib.sha256(b"weights of the pictured model").hexdigest()
WINDOW = (1200, 1100)
TOLERANCE = 2  # per channel: a browser that colour-manages may move a value by a step or two


# the page's rows, in the canned query's order (model, layer, channel, kind, rank)
SHOWN = [("conv1:0", "optimised", CHECKER), ("conv1:1", "optimised", CHECKER), ("conv1:1", "example", GRADIENT)]


class Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def chromium(tmp_path, url: str, *flags: str) -> subprocess.CompletedProcess:
    argv = [CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
            "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", *flags, url]  # fmt: skip
    return subprocess.run(argv, capture_output=True, timeout=60)


def places(screenshot: np.ndarray, picture: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners where ``picture`` (RGB) appears in ``screenshot``, every pixel within TOLERANCE."""
    h, w = picture.shape[:2]
    corner = np.abs(screenshot - picture[0, 0]).max(-1) <= TOLERANCE
    found = []
    for y, x in np.argwhere(corner[: len(screenshot) - h + 1, : screenshot.shape[1] - w + 1]):
        if np.abs(screenshot[y : y + h, x : x + w] - picture).max() <= TOLERANCE:
            found.append((int(y), int(x)))
    return found


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("datasette")
    pytest.importorskip("datasette_render_images", reason="pip install 'datasette-render-images>=0.4,<1'")
    path = tmp_path / "lab.db"
    with Catalog(path) as cat:
        cat.add_pictures(SHA, [{"neuron": neuron, "kind": kind, "rank": 0, "png": png, "method": {"steps": 8},
                                "activation": 1.0, "agreement": None} for neuron, kind, png in SHOWN],
                         model_name="planted:pictured")  # fmt: skip
    port = free_port()
    proc = start_serve(path, port)
    try:
        rows = fetch_json(f"http://127.0.0.1:{port}/lab/pictures_of_neurons.json?_shape=array", proc)
        assert rows is not None, "datasette did not answer"
        assert [(r["neuron"], r["kind"], base64.b64decode(r["picture"]["encoded"])) for r in rows] == SHOWN
        yield f"http://127.0.0.1:{port}/lab/pictures_of_neurons"
    finally:
        stop_group(proc)


def test_the_pages_images_are_the_stored_pngs_once_loaded(server, tmp_path):
    run = chromium(tmp_path, server, "--dump-dom")
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    images = Images()
    images.feed(run.stdout.decode())
    prefix = "data:image/png;base64,"
    assert images.sources and all(src.startswith(prefix) for src in images.sources), images.sources[:3]
    assert [base64.b64decode(src[len(prefix):]) for src in images.sources] == [png for _, _, png in SHOWN]


def test_the_screenshot_shows_every_picture_pixel_for_pixel(server, tmp_path):
    shot = tmp_path / "page.png"
    run = chromium(tmp_path, server, f"--screenshot={shot}")
    assert run.returncode == 0 and shot.is_file(), run.stderr.decode(errors="replace")[-2000:]
    screenshot = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert screenshot.shape[:2] == (WINDOW[1], WINDOW[0]) and screenshot.std() > 0  # not blank
    corners = []
    for name, png, copies in (("checkerboard", CHECKER, 2), ("gradient", GRADIENT, 1)):
        picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
        found = places(screenshot, picture)
        assert len(found) == copies, f"the {name} is on the screenshot at {found}, not {copies} times"
        corners += found
    assert len({x for _, x in corners}) == 1  # in one column, the table's picture column

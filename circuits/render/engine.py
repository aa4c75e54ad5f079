"""Which Graphviz program draws a diagram: the system's ``dot`` when it is installed, else the
``graphviz-pure`` program that ``pip install`` brings with this package (a self-contained port of
Graphviz 16.1.0, https://graphviz-pure.github.io/), so ``--render`` works after the install alone. It is
EPL-2.0 like Graphviz itself and, like a system dot, is only ever run as a separate program.

graphviz-pure 0.2 lays out ``<IMG SRC>`` cells and writes them into SVG, but its PNG renderer is built
without raster-image decoding: it leaves the cells empty. For PNG through graphviz-pure we therefore ask
for the SVG of the same layout as well and paste each image into the PNG at the place that SVG gives it.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from circuits.errors import CircuitsError

MISSING = ("no Graphviz program to draw with: pip install graphviz-pure (a circuits dependency), "
           "or apt-get install graphviz")  # fmt: skip


@dataclass(frozen=True)
class Engine:
    """A Graphviz command line: ``name`` is ``"dot"`` (the system's) or ``"graphviz-pure"``."""

    name: str
    path: str

    def draw(self, source: str, fmt: str) -> bytes:
        """``source`` (DOT text) drawn as ``fmt`` ("svg" or "png"), with its ``<IMG>`` pictures in it."""
        data = self._run(source, fmt)
        if fmt == "png" and self.name == "graphviz-pure":
            data = _paste_images(data, self._run(source, "svg").decode())
        return data

    def _run(self, source: str, fmt: str) -> bytes:
        done = subprocess.run([self.path, "-Kdot", f"-T{fmt}"], input=source.encode(), capture_output=True)
        if done.returncode != 0:
            why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise CircuitsError(f"{self.name} could not draw the diagram (exit {done.returncode}): {why}")
        return done.stdout


def find_engine() -> Engine:
    """The system's ``dot`` if it is on PATH, else the bundled graphviz-pure; raises if there is neither."""
    system = shutil.which("dot")
    if system is not None:
        return Engine("dot", system)
    bundled = graphviz_pure_path()
    if bundled is None:
        raise CircuitsError(MISSING)
    return Engine("graphviz-pure", bundled)


def graphviz_pure_path() -> str | None:
    """Where pip put the ``graphviz-pure`` program (found through its installed files, so it is found even
    when the environment's scripts folder is not on PATH), or None."""
    try:
        dist = metadata.distribution("graphviz-pure")
    except metadata.PackageNotFoundError:
        dist = None
    for file in (dist.files or []) if dist else []:
        if file.name in ("graphviz-pure", "graphviz-pure.exe"):
            path = Path(dist.locate_file(file)).resolve()
            if path.is_file():
                return str(path)
    return shutil.which("graphviz-pure")


_VIEWBOX = re.compile(r'<svg [^>]*viewBox="[-\d.]+ [-\d.]+ ([\d.]+) [\d.]+"')
_GRAPH = re.compile(
    r'class="graph" transform="scale\(([\d.]+) ([\d.]+)\) rotate\(0\) translate\(([-\d.]+) ([-\d.]+)\)"'
)
_IMAGE = re.compile(
    r'<image xlink:href="([^"]+)" width="([\d.]+)px" height="([\d.]+)px"[^>]*? x="([-\d.]+)" y="([-\d.]+)"'
)


def _paste_images(png: bytes, svg: str) -> bytes:
    """``png`` with every ``<image>`` of ``svg`` (the same layout, in points) pasted where the SVG puts it."""
    import html

    from PIL import Image

    images = list(_IMAGE.finditer(svg))
    if not images:
        return png
    canvas = Image.open(io.BytesIO(png)).convert("RGBA")
    width, graph = _VIEWBOX.search(svg), _GRAPH.search(svg)
    if width is None or graph is None:
        raise CircuitsError(
            "graphviz-pure wrote an SVG this version of circuits cannot read: pip install 'graphviz-pure<0.3'"
        )
    sx, sy, tx, ty = map(float, graph.groups())
    dpi = round(canvas.width / float(width.group(1)) * 72)  # 96 unless the graph sets dpi
    pixels = dpi / 72
    for match in images:
        href, w, h, x, y = match.group(1), *map(float, match.groups()[1:])
        picture = Image.open(html.unescape(href)).convert("RGBA")
        size = (round(w * sx * pixels), round(h * sy * pixels))
        if picture.size != size:
            picture = picture.resize(size, Image.NEAREST)
        canvas.alpha_composite(picture, (round((x + tx) * sx * pixels), round((y + ty) * sy * pixels)))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()

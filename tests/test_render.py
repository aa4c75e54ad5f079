"""Which Graphviz draws --render diagrams: the system's dot when on PATH, else the bundled graphviz-pure;
pictures survive either way."""

import io
import os
import xml.dom.minidom

import networkx as nx
import numpy as np
import pytest
from PIL import Image

from circuits.errors import CircuitsError
from circuits.render import engine, render_circuit
from circuits.render.thumbnails import kernel_png


@pytest.fixture
def circuit():
    """Three neurons, two spatial edges of opposite sign and one 1×1 edge (no thumbnail)."""
    rng = np.random.default_rng(0)
    g = nx.DiGraph()
    for node, layer, channel, depth in [("b:0", "b", 0, 0), ("a:0", "a", 0, 1), ("a:1", "a", 1, 1)]:
        g.add_node(node, layer=layer, channel=channel, depth=depth, label=None)
    g.add_edge("a:0", "b:0", weight=0.9, kernel=rng.normal(size=(3, 3)).tolist())
    g.add_edge("a:1", "b:0", weight=-0.4, kernel=rng.normal(size=(5, 5)).tolist())
    g.add_node("c:0", layer="c", channel=0, depth=2, label="decoy")
    g.add_edge("c:0", "a:1", weight=0.2, kernel=[[0.2]])
    return g


@pytest.fixture
def no_system_dot(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def _contains_block(image: np.ndarray, block: np.ndarray) -> bool:
    h, w = block.shape[:2]
    for y, x in zip(*np.nonzero((image == block[0, 0]).all(axis=-1)), strict=True):
        if (
            y + h <= image.shape[0]
            and x + w <= image.shape[1]
            and (image[y : y + h, x : x + w] == block).all()
        ):
            return True
    return False


def test_bundled_graphviz_draws_when_dot_is_not_on_path(no_system_dot, circuit, tmp_path):
    assert engine.find_engine().name == "graphviz-pure"
    svg = render_circuit(circuit, tmp_path / "c.svg").read_text()
    xml.dom.minidom.parseString(svg)
    assert svg.count("data:image/png;base64") == 2 and "<title>c_0</title>" in svg


def test_bundled_graphviz_png_shows_every_thumbnail_pixel_for_pixel(no_system_dot, circuit, tmp_path):
    png = np.asarray(Image.open(render_circuit(circuit, tmp_path / "c.png")).convert("RGB"))
    for _, _, attrs in circuit.edges(data=True):
        if len(attrs["kernel"]) > 1:
            thumb = np.asarray(Image.open(io.BytesIO(kernel_png(attrs["kernel"]))).convert("RGB"))
            assert _contains_block(png, thumb)


def test_system_dot_is_preferred_when_on_path(tmp_path, monkeypatch, circuit):
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "called"
    (fake / "dot").write_text(
        "#!/bin/sh\n"
        f'echo "$@" > "{record}"\n'
        "while read -r line; do :; done\n"
        "printf '<svg xmlns=\"http://www.w3.org/2000/svg\"><title>fake</title></svg>'\n"
    )
    (fake / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert engine.find_engine() == engine.Engine("dot", str(fake / "dot"))
    out = render_circuit(circuit, tmp_path / "c.svg")
    assert record.read_text().split() == ["-Kdot", "-Tsvg"]
    assert "<title>fake</title>" in out.read_text()


def test_no_renderer_at_all_is_one_line_naming_the_fix(no_system_dot, monkeypatch, circuit, tmp_path):
    monkeypatch.setattr(engine, "graphviz_pure_path", lambda: None)
    with pytest.raises(CircuitsError) as error:
        render_circuit(circuit, tmp_path / "c.svg")
    message = str(error.value)
    assert (
        "\n" not in message
        and "pip install graphviz-pure" in message
        and "apt-get install graphviz" in message
    )
    assert not (tmp_path / "c.svg").exists()

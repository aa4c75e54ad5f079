"""Pictures of neurons in the catalog: PNGs stored once by content hash, one row per neuron's picture,
deterministic ids, refusals in one sentence, merge, export, the v3 -> v4 upgrade, and datasette's page.

The PNGs are made here with numpy and Pillow (a checkerboard in colour, a grey gradient), and every check
compares with what the test computes itself: sha256 of the bytes, the array's shape, canonical JSON.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html.parser
import io
import json
import re
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pngs import CHECKER, GRADIENT, checkerboard, png_of

from circuits.catalog import Catalog, schema
from circuits.catalog.serve import CANNED_QUERIES
from circuits.cli import main
from circuits.errors import CatalogError, CatalogReadOnlyError, UsageError

SHA_A = hashlib.sha256(b"weights of model A").hexdigest()
SHA_B = hashlib.sha256(b"weights of model B").hexdigest()
TIME_COLUMNS = {"created", "label_created", "applied"}
METHOD = {"method": "visualise", "objective": "channel", "parameterisation": "fourier", "steps": 64, "seed": 0}
EXAMPLES = {"method": "dataset_examples", "data": "toyworld:64", "k": 2}


def picture(neuron, kind="optimised", rank=0, png=CHECKER, method=None, activation=1.5, agreement=0.75) -> dict:
    return {"neuron": neuron, "kind": kind, "rank": rank, "png": png, "method": METHOD if method is None else method,
            "activation": activation, "agreement": agreement}


def a_run() -> list[dict]:
    """conv1:0 and conv1:1 share the checkerboard; conv1:1's top example is the gradient."""
    return [picture("conv1:0"), picture("conv1:1", activation=2.0),
            picture("conv1:1", "example", 0, GRADIENT, EXAMPLES, 3.0, None)]


def timeless(path) -> dict:
    with Catalog(path, readonly=True) as cat:
        tables = cat.export("json")["tables"]
    return {name: sorted(({k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows),
                         key=lambda r: json.dumps(r, sort_keys=True)) for name, rows in tables.items()}


def count(cat, table) -> int:
    return cat.value(f"SELECT count(*) FROM {table}")


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "catalog.db") as catalog:
        catalog.add_model(SHA_A, "zoo:plain-cnn")
        yield catalog


def test_a_png_shared_by_two_neurons_is_stored_once(cat):
    ids = cat.add_pictures(SHA_A, a_run())
    assert len(set(ids)) == 3 and (count(cat, "images"), count(cat, "neuron_images")) == (2, 3)
    images = {r["id"]: r for r in cat.rows("SELECT * FROM images")}
    assert images[hashlib.sha256(CHECKER).hexdigest()] == {
        "id": hashlib.sha256(CHECKER).hexdigest(), "png": CHECKER, "width": 48, "height": 48, "mode": "RGB"}
    assert images[hashlib.sha256(GRADIENT).hexdigest()] == {
        "id": hashlib.sha256(GRADIENT).hexdigest(), "png": GRADIENT, "width": 64, "height": 32, "mode": "L"}
    assert cat.rows("SELECT layer, channel, kind, rank, image FROM neuron_images ORDER BY channel, kind") == [
        {"layer": "conv1", "channel": 0, "kind": "optimised", "rank": 0, "image": hashlib.sha256(CHECKER).hexdigest()},
        {"layer": "conv1", "channel": 1, "kind": "example", "rank": 0, "image": hashlib.sha256(GRADIENT).hexdigest()},
        {"layer": "conv1", "channel": 1, "kind": "optimised", "rank": 0, "image": hashlib.sha256(CHECKER).hexdigest()}]


def test_the_id_hashes_what_the_picture_is_and_how_it_was_made(cat):
    [one] = cat.add_pictures(SHA_A, [picture("conv1:01")])  # the neuron as LAYER:CHANNEL, channel as a number
    content = {"model": SHA_A, "neuron": "conv1:1", "kind": "optimised", "rank": 0,
               "image": hashlib.sha256(CHECKER).hexdigest(), "method": METHOD}
    assert one == hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    # measurements and times are not content; every part of what it is and how it was made is
    assert cat.add_pictures(SHA_A, [picture("conv1:1", activation=9.0, agreement=None)]) == [one]
    others = [picture("conv1:2"), picture("conv1:1", "diverse"), picture("conv1:1", rank=1),
              picture("conv1:1", png=GRADIENT), picture("conv1:1", method={**METHOD, "seed": 1})]
    assert len({one, *cat.add_pictures(SHA_A, others)}) == 6
    cat.add_model(SHA_B, "zoo:other")
    assert cat.add_pictures(SHA_B, [picture("conv1:1")]) != [one]


def test_the_same_pictures_give_the_same_rows_and_ids_and_re_adding_is_a_noop(tmp_path):
    ids = []
    for name in ("a.db", "b.db"):
        with Catalog(tmp_path / name) as cat:
            ids.append(cat.add_pictures(SHA_A, a_run(), model_name="zoo:plain-cnn"))
    assert ids[0] == ids[1] and timeless(tmp_path / "a.db") == timeless(tmp_path / "b.db")
    with Catalog(tmp_path / "a.db") as cat:
        before = cat.export("json")["tables"]
        assert cat.add_pictures(SHA_A, a_run()[::-1]) == ids[0][::-1]  # ids in input order
        assert cat.export("json")["tables"] == before  # created times too: nothing was written


def test_a_picture_makes_its_layer_and_neuron_and_registers_an_unknown_model(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        cat.add_pictures(SHA_B, [picture("features.4.conv.0:7")], model_name="zoo:mobilenet")
        assert cat.rows("SELECT id, name FROM models") == [{"id": SHA_B, "name": "zoo:mobilenet"}]
        assert cat.rows("SELECT model, name FROM layers") == [{"model": SHA_B, "name": "features.4.conv.0"}]
        assert cat.label("zoo:mobilenet", "features.4.conv.0:7", "stripes")["label"] == "stripes"
        cat.add_pictures("zoo:mobilenet", [picture("features.4.conv.0:7", "negative")])  # a known model by name
        assert count(cat, "models") == 1 and count(cat, "neuron_images") == 2


def test_neuron_pictures_come_by_kind_then_rank_with_their_png(cat):
    scrambled = [picture("conv1:3", "example", 1, GRADIENT, EXAMPLES, 2.0, None),
                 picture("conv1:3", "negative", 0, GRADIENT, activation=-4.0, agreement=None),
                 picture("conv1:3", "example", 0, CHECKER, EXAMPLES, 3.0, None),
                 picture("conv1:3", "diverse", 1, GRADIENT), picture("conv1:3"), picture("conv1:4")]
    cat.add_pictures(SHA_A, scrambled)
    rows = cat.neuron_pictures("zoo:plain-cnn", "conv1:3")
    assert [(r["kind"], r["rank"]) for r in rows] == [("optimised", 0), ("diverse", 1), ("negative", 0),
                                                      ("example", 0), ("example", 1)]
    [best] = cat.neuron_pictures(SHA_A[:8], "conv1:3", kind="optimised")
    assert (best["png"], best["width"], best["height"], best["mode"], best["neuron"]) == (CHECKER, 48, 48, "RGB", "conv1:3")
    assert best["method"] == METHOD and (best["activation"], best["agreement"]) == (1.5, 0.75)
    assert Image.open(io.BytesIO(best["png"])).convert("RGB").tobytes() == checkerboard().tobytes()
    assert cat.neuron_pictures("zoo:plain-cnn", "conv1:9") == []
    with pytest.raises(UsageError, match="unknown picture kind 'optimized'.*did you mean 'optimised'"):
        cat.neuron_pictures("zoo:plain-cnn", "conv1:3", kind="optimized")
    with pytest.raises(UsageError, match="unknown model 'zoo:plain-cn'"):
        cat.neuron_pictures("zoo:plain-cn", "conv1:3")
    with pytest.raises(UsageError, match="LAYER:CHANNEL"):
        cat.neuron_pictures("zoo:plain-cnn", "conv1")


def test_nan_and_infinite_measurements_are_stored_as_null(cat):
    cat.add_pictures(SHA_A, [picture("conv1:0", activation=float("inf"), agreement=float("nan")),
                             picture("conv1:1", activation=np.float32(0.5), agreement=np.float64(-0.25))])
    assert cat.rows("SELECT channel, activation, agreement FROM neuron_images ORDER BY channel") == [
        {"channel": 0, "activation": None, "agreement": None}, {"channel": 1, "activation": 0.5, "agreement": -0.25}]


def _rgba() -> bytes:
    return png_of(np.zeros((4, 4, 4), np.uint8))


BAD = [
    ("unknown-kind", {"kind": "optimized"}, r"pictures\[1\] has kind 'optimized'; use one of optimised, diverse, negative, example; did you mean 'optimised'\?"),
    ("neuron-without-channel", {"neuron": "conv1"}, r"pictures\[1\]'s neuron 'conv1' is not of the form LAYER:CHANNEL"),
    ("neuron-not-a-string", {"neuron": ("conv1", 3)}, r"pictures\[1\]'s neuron must be a 'LAYER:CHANNEL' string"),
    ("negative-rank", {"rank": -1}, r"pictures\[1\]'s rank must be a whole number from 0"),
    ("bool-rank", {"rank": True}, r"pictures\[1\]'s rank must be a whole number"),
    ("gif-bytes", {"png": b"GIF89a" + bytes(40)}, r"pictures\[1\]'s png is not a PNG file .*save the picture as PNG"),
    ("cut-png", {"png": CHECKER[: len(CHECKER) // 2]}, r"pictures\[1\]'s png is damaged or cut short .*save the picture again"),
    ("png-as-a-path", {"png": "picture.png"}, r"pictures\[1\]'s png must be the PNG file's bytes, got str; read the file in binary mode"),
    ("rgba-png", {"png": _rgba()}, r"pictures\[1\]'s png has mode 'RGBA'.*convert it first"),
    ("method-not-a-dict", {"method": "visualise"}, r"pictures\[1\]'s method must be a dict saying how the picture was made"),
    ("nan-in-method", {"method": {"lr": float("nan")}}, r"pictures\[1\]'s method is not plain JSON"),
    ("text-activation", {"activation": "high"}, r"pictures\[1\]'s activation must be a number or None, got 'high'"),
    ("list-agreement", {"agreement": [0.5]}, r"pictures\[1\]'s agreement must be a number or None"),
    ("misspelt-key", {"agreemnt": 0.5}, r"pictures\[1\] has an unknown key 'agreemnt'; each picture is a dict of exactly \{.*\}; did you mean 'agreement'\?"),
    ("no-png", {"png": None}, r"pictures\[1\]'s png must be the PNG file's bytes, got NoneType"),
]


@pytest.mark.parametrize("case, change, message", BAD, ids=[case for case, _, _ in BAD])
def test_bad_pictures_are_refused_in_one_sentence_and_nothing_is_written(cat, case, change, message):
    bad = {**picture("conv1:1"), **change}
    with pytest.raises(UsageError, match=message) as caught:
        cat.add_pictures(SHA_A, [picture("conv1:0"), bad])
    assert len(str(caught.value).splitlines()) == 1 and str(caught.value).endswith((".", "?", ")"))
    assert (count(cat, "images"), count(cat, "neuron_images"), count(cat, "neurons")) == (0, 0, 0)


def test_missing_keys_a_non_list_and_a_conflicting_twin_are_refused(cat):
    incomplete = picture("conv1:0")
    del incomplete["method"]
    with pytest.raises(UsageError, match=r"pictures\[0\] lacks 'method'; each picture is a dict of exactly \{neuron, kind"):
        cat.add_pictures(SHA_A, [incomplete])
    misspelt = {**incomplete, "methd": METHOD}
    with pytest.raises(UsageError, match=r"pictures\[0\] has an unknown key 'methd'.*did you mean 'method'\?"):
        cat.add_pictures(SHA_A, [misspelt])
    with pytest.raises(UsageError, match="pictures must be a list of dicts"):
        cat.add_pictures(SHA_A, picture("conv1:0"))
    with pytest.raises(UsageError, match=r"pictures\[1\] and pictures\[0\] are both the optimised picture of conv1:0 .*own rank"):
        cat.add_pictures(SHA_A, [picture("conv1:0"), picture("conv1:0", png=GRADIENT)])
    assert cat.add_pictures(SHA_A, [picture("conv1:0")] * 2) == [cat.add_pictures(SHA_A, [picture("conv1:0")])[0]] * 2
    with pytest.raises(UsageError, match="non-empty id"):
        cat.add_pictures(None, [picture("conv1:0")])


def test_a_read_only_catalog_gives_pictures_and_refuses_new_ones(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        cat.add_pictures(SHA_A, a_run(), model_name="zoo:plain-cnn")
    with Catalog(tmp_path / "c.db", readonly=True) as cat:
        assert [r["png"] for r in cat.neuron_pictures("zoo:plain-cnn", "conv1:1")] == [CHECKER, GRADIENT]
        with pytest.raises(CatalogReadOnlyError):
            cat.add_pictures(SHA_A, [picture("conv1:5")])


def test_merge_unions_pictures_without_duplicates_in_either_order(tmp_path):
    alice = a_run()
    bob = [picture("conv1:0"),  # the same row as Alice's
           picture("conv1:2", "example", 0, GRADIENT, EXAMPLES, 1.0, None),  # her gradient, another neuron
           picture("conv1:2", "optimised", 0, png_of(255 - checkerboard()))]  # a new image
    for name, run in (("alice.db", alice), ("bob.db", bob), ("both.db", alice + bob[1:])):
        with Catalog(tmp_path / name) as cat:
            cat.add_pictures(SHA_A, run, model_name="zoo:plain-cnn")
    for into, other, gained in (("alice.db", "bob.db", (1, 2)), ("bob.db", "alice.db", (0, 2))):
        with Catalog(tmp_path / into) as cat:
            added = cat.merge(tmp_path / other)
            assert (added["images"], added["neuron_images"]) == gained  # images and rows they share come once
            assert (count(cat, "images"), count(cat, "neuron_images")) == (3, 5)
            again = cat.merge(tmp_path / other)
            assert (again["images"], again["neuron_images"]) == (0, 0)
        assert timeless(tmp_path / into) == timeless(tmp_path / "both.db")
    with Catalog(tmp_path / "alice.db", readonly=True) as cat:
        assert [r["png"] for r in cat.neuron_pictures("zoo:plain-cnn", "conv1:2")] == [png_of(255 - checkerboard()),
                                                                                       GRADIENT]


def test_exports_spell_the_png_so_it_comes_back_byte_for_byte(tmp_path):
    path = tmp_path / "c.db"
    with Catalog(path) as cat:
        cat.add_pictures(SHA_A, a_run(), model_name="zoo:plain-cnn")
        dump = cat.export("json")
        csv_text = cat.export("csv", "images")
        script = cat.export("sql")
    images = {r["id"]: r for r in dump["tables"]["images"]}
    for png in (CHECKER, GRADIENT):  # JSON: sqlite-utils' and datasette's spelling of a BLOB
        cell = images[hashlib.sha256(png).hexdigest()]["png"]
        assert cell["$base64"] is True and base64.b64decode(cell["encoded"]) == png
    assert all(isinstance(r["method"], dict) for r in dump["tables"]["neuron_images"])
    json.dumps(dump, allow_nan=False)  # plain JSON throughout
    header, *lines = csv_text.splitlines()
    assert header == "id,png,width,height,mode"
    assert sorted(base64.b64decode(line.split(",")[1]) for line in lines) == sorted([CHECKER, GRADIENT])

    conn = sqlite3.connect(tmp_path / "copy.db")  # SQL: rebuilt by sqlite3 itself
    conn.executescript(script)
    assert sorted(r[0] for r in conn.execute("SELECT png FROM images")) == sorted([CHECKER, GRADIENT])
    conn.close()
    with Catalog(tmp_path / "copy.db", readonly=True) as copy:
        assert copy.export("json") == dump
    result = CliRunner().invoke(main, ["catalog", "export", "--format", "json", "--catalog", str(path)])
    assert result.exit_code == 0 and json.loads(result.output)["tables"]["images"] == dump["tables"]["images"]


def test_a_version_3_catalog_is_backed_up_and_gains_the_picture_tables(tmp_path, monkeypatch):
    path = tmp_path / "v3.db"
    with monkeypatch.context() as m:  # written by this code as it was at version 3
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        with Catalog(path) as cat:
            cat.add_model(SHA_A, "zoo:plain-cnn", layers=["conv1"])
            assert "images" not in cat.db.table_names()
    conn = sqlite3.connect(path)  # a label as version 3 wrote it (today's code writes version 5's columns)
    with conn:
        conn.execute("INSERT INTO neurons VALUES (?, 'conv1', 1, 'vertical edge', 'user', ?, NULL)",
                     (SHA_A, "2026-01-01T00:00:00.000000+00:00"))
        conn.execute("INSERT INTO label_history VALUES (?, 'conv1', 1, 'vertical edge', 'user', ?)",
                     (SHA_A, "2026-01-01T00:00:00.000000+00:00"))
    before = conn.execute("SELECT * FROM neurons").fetchall()
    conn.close()
    with pytest.raises(CatalogError, match="older than this circuits"):  # a read never upgrades
        Catalog(path, readonly=True)
    with Catalog(path) as cat:
        assert cat.value("SELECT max(version) FROM schema_version") == schema.current_version()
        assert cat.rows("SELECT model, layer, channel, label, label_source, label_created, notes FROM neurons") == [
            dict(zip(("model", "layer", "channel", "label", "label_source", "label_created", "notes"), before[0]))]
        cat.add_pictures("zoo:plain-cnn", [picture("conv1:1")])
        assert cat.neuron_pictures("zoo:plain-cnn", "conv1:1")[0]["png"] == CHECKER
        assert cat.search("vertical")[0]["id"] == "zoo:plain-cnn/conv1:1"
    backup = sqlite3.connect(tmp_path / "v3.db.bak-v3")
    assert backup.execute("SELECT max(version) FROM schema_version").fetchone() == (3,)
    assert backup.execute("SELECT count(*) FROM sqlite_master WHERE name = 'images'").fetchone() == (0,)
    backup.close()


def test_the_canned_query_lists_pictures_and_its_boxes_filter_them(tmp_path):
    path = tmp_path / "lab.db"
    with Catalog(path) as cat:
        cat.add_pictures(SHA_A, a_run(), model_name="zoo:plain-cnn")
        cat.add_pictures(SHA_B, [picture("conv1:0", "negative", png=GRADIENT)], model_name="zoo:other")
    conn = sqlite3.connect(path)

    def run(**boxes):
        params = {"model": "", "layer": "", "neuron": "", **boxes}
        return [r[:4] for r in conn.execute(CANNED_QUERIES["pictures_of_neurons"]["sql"], params)]

    assert run() == [("zoo:other", "conv1:0", "negative", 0), ("zoo:plain-cnn", "conv1:0", "optimised", 0),
                     ("zoo:plain-cnn", "conv1:1", "optimised", 0), ("zoo:plain-cnn", "conv1:1", "example", 0)]
    assert run(model="zoo:plain-cnn", neuron="conv1:1") == run()[2:]
    assert run(model=SHA_B) == run()[:1] and run(layer="conv2") == []
    assert [r[6] for r in conn.execute(CANNED_QUERIES["pictures_of_neurons"]["sql"],
                                       {"model": "", "layer": "", "neuron": "conv1:1"})] == [CHECKER, GRADIENT]
    conn.close()


class _Cells(html.parser.HTMLParser):
    """The picture column's cells of a datasette page: each <img> src, and each download link."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self._in_picture = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td":
            self._in_picture = "col-picture" in (attrs.get("class") or "")
        elif self._in_picture and tag == "img":
            self.images.append(attrs["src"])
        elif self._in_picture and tag == "a":
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_picture = False


def _page(path, plugin: bool) -> tuple[_Cells, list[bytes]]:
    """The canned query's page from datasette in this process (with or without datasette-render-images), and
    the bytes behind each download link."""
    from datasette.app import Datasette
    from datasette.plugins import pm

    from circuits.catalog import serve

    module = pm.unregister(name="render_images") if not plugin else None
    try:
        async def fetch():
            ds = Datasette([str(path)], metadata=serve.metadata(str(path)))
            page = await ds.client.get(f"/{path.stem}/pictures_of_neurons")
            assert page.status_code == 200
            cells = _Cells()
            cells.feed(page.text)
            return cells, [(await ds.client.get(href)).content for href in cells.links]

        return asyncio.run(fetch())
    finally:
        if module is not None:
            pm.register(module, name="render_images")


@pytest.fixture
def served(tmp_path):
    pytest.importorskip("datasette")
    path = tmp_path / "lab.db"
    with Catalog(path) as cat:
        cat.add_pictures(SHA_A, a_run(), model_name="zoo:plain-cnn")
    return path


def test_with_the_images_plugin_each_picture_is_an_img_of_its_png(served):
    pytest.importorskip("datasette_render_images", reason="pip install 'datasette-render-images>=0.4,<1'")
    cells, _ = _page(served, plugin=True)
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in cells.images) and cells.links == []
    assert [base64.b64decode(src[len(prefix):]) for src in cells.images] == [CHECKER, CHECKER, GRADIENT]


def test_without_the_images_plugin_each_picture_is_a_link_that_downloads_its_png(served):
    pytest.importorskip("datasette_render_images", reason="the plugin is what this test switches off")
    cells, downloads = _page(served, plugin=False)
    assert cells.images == [] and downloads == [CHECKER, CHECKER, GRADIENT]


def test_serve_says_how_to_see_pictures_when_the_plugin_is_missing(monkeypatch):
    from circuits.catalog import serve

    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name: None)
    note = serve.missing_images_plugin()
    assert "download links" in note and "pip install 'datasette-render-images>=0.4,<1'" in note
    assert re.fullmatch(r"[^\n]+", note)
    monkeypatch.undo()
    if serve.importlib.util.find_spec("datasette_render_images") is not None:
        assert serve.missing_images_plugin() is None
    assert serve.metadata("x/lab.db")["plugins"]["datasette-render-images"]["size_limit"] >= 2**20

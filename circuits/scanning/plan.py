"""A scan's plan: which shards, what each runs with, and the key that says a shard is done.

A **shard** is one layer of one model; it runs some of the scan's parts (``circuits``, ``motifs``, ``labels``,
``pictures``) over every neuron of that layer. Each part has a **key**: the sha256 of the model's weights hash,
the layer, the part, the arguments that part runs with and the tool's version. A catalog that holds a key in
``scan_shards`` holds that part's rows, so a rerun skips it; a changed argument (``--top-k``) changes only the
keys of the parts it reaches.

Planning loads each model once in the driver, to read its layers and its weights hash (what the catalog knows
it by) and to hash the weights file it will send; models travel to workers as these facts, never as modules.
A data spec that names files (a folder, a ``.npy``/``.pt`` tensor, ``augment:N:SEED:FOLDER``) travels as an
absolute path, and its parts' keys hold the sha256 of those files: changed images are scanned again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field

from circuits.errors import BadSpecError, UnknownNeuronError, UsageError, close_matches_hint

WHAT = ("circuits", "motifs", "labels", "pictures")
UNSCANNED_KINDS = ("input", "concat")  # the image itself, and aliases whose channels belong to their parts
DEFAULT_DATA = "toyworld:256:12345"  # the shared catalog's probe data (circuits/zoo/catalog.py): held out


@dataclass(frozen=True)
class Options:
    """What a scan's parts run with (each part keeps only the options that change its rows)."""

    depth: int = 1
    top_k: int = 8
    data: str | None = None  # motifs, pictures (DEFAULT_DATA) and labels (the model's own task) when None
    motif_kind: str = "all"
    bar: float = 0.9
    steps: int = 64
    examples: int = 4
    seed: int = 0
    data_sha256: str | None = None  # of the files ``data`` names, when it names files (:func:`data_identity`)

    def arguments(self, what: str, labels_data: str) -> dict:
        data = self.data or DEFAULT_DATA
        files = {"data_sha256": self.data_sha256} if self.data and self.data_sha256 else {}
        if what == "circuits":
            return {"depth": self.depth, "top_k": self.top_k, "method": "weights"}
        if what == "motifs":
            return {"kind": self.motif_kind, "data": data, **files}
        if what == "labels":
            return {"data": self.data or labels_data, "bar": self.bar}
        return {"data": data, "steps": self.steps, "examples": self.examples, "seed": self.seed,
                "objective": "channel", **files}  # fmt: skip


@dataclass(frozen=True)
class Model:
    """A model as it travels: its spec, the weights file and that file's sha256 (``None`` for a model whose
    weights its spec builds, as planted ones), and the hash of its loaded weights (its catalog id). ``text``
    is the MODEL as given (``SPEC@WEIGHTS.pt``): what reports name it by, since one spec may come with
    several checkpoints."""

    text: str
    spec: str
    weights: str | None
    sha256: str | None
    id: str
    name: str
    architecture: str
    parameters: int
    layers: tuple[str, ...]
    zoo: bool = False

    def to_dict(self) -> dict:
        return {"spec": self.spec, "weights": self.weights, "sha256": self.sha256, "id": self.id, "zoo": self.zoo}


@dataclass(frozen=True)
class Part:
    what: str
    arguments: dict
    key: str


@dataclass
class Shard:
    """One layer of one model and the parts it runs; ``parts`` left to run, ``done`` already in the catalog."""

    model: Model
    layer: str
    kind: str
    channels: int
    parts: list[Part]
    done: list[Part] = field(default_factory=list)

    @property
    def key(self) -> str:
        return sha256_text("+".join(p.key for p in self.parts))

    def task(self, tool_version: str) -> dict:
        """What a worker is sent: plain JSON, no module."""
        return {"model": self.model.to_dict(), "layer": self.layer, "tool_version": tool_version,
                "parts": [{"what": p.what, "arguments": p.arguments, "key": p.key} for p in self.parts]}  # fmt: skip


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_key(model: Model, layer: str, what: str, arguments: dict, tool_version: str) -> str:
    from circuits.catalog.payload import canonical

    return sha256_text(canonical({"weights": model.id, "file": model.sha256, "layer": layer, "what": what,
                                  "arguments": arguments, "tool_version": tool_version}))  # fmt: skip


def parse_what(what) -> tuple[str, ...]:
    """``"circuits,motifs"`` (or a list) -> the parts in their fixed order; unknown ones are refused."""
    items = what.split(",") if isinstance(what, str) else list(what or ())
    items = [str(i).strip() for i in items if str(i).strip()]
    if not items:
        raise UsageError(f"--what needs at least one of {', '.join(WHAT)}")
    for item in items:
        if item not in WHAT:
            raise UsageError(f"unknown --what item '{item}'{close_matches_hint(item, WHAT)} (choose from "
                             f"{', '.join(WHAT)}, comma-separated)")  # fmt: skip
    return tuple(w for w in WHAT if w in items)


def split_model(text: str) -> tuple[str, str | None]:
    """``SPEC@WEIGHTS.pt`` -> (spec, weights path); a bare spec has no weights file of its own."""
    if not isinstance(text, str) or not text.strip():
        raise BadSpecError("a MODEL is a spec (zoo:NAME, planted:NAME, module:attr, file.py:attr), optionally "
                           "with @WEIGHTS.pt")  # fmt: skip
    spec, sep, weights = text.rpartition("@")
    if not sep:
        return text, None
    if not spec or not weights:
        raise BadSpecError(f"model '{text}': write SPEC@WEIGHTS.pt (e.g. mypkg.nets:Net@run3.pt)")
    if not os.path.isfile(weights):
        raise BadSpecError(f"model '{text}': weights file '{weights}' does not exist; check the path")
    return spec, os.path.abspath(weights)


def describe(text: str):
    """Load the model ``text`` names (``SPEC`` or ``SPEC@WEIGHTS.pt``); returns the facts its shards carry
    (:class:`Model`), the loaded model and its neuron graph."""
    from circuits import zoo
    from circuits.graph import build_graph
    from circuits.models import load

    spec, weights = split_model(text)
    source, sep, attr = spec.rpartition(":")
    if sep and source.endswith(".py") and os.path.isfile(source):  # workers elsewhere read the same file
        spec = f"{os.path.abspath(source)}:{attr}"
    loaded = load(spec, weights=weights)
    graph = build_graph(loaded)
    shipped = spec.startswith("zoo:") and weights is None  # a worker reads its own shipped copy
    if shipped:
        weights = str(zoo.WEIGHTS_DIR / f"{zoo.canonical(spec.partition(':')[2])}.pt")
    layers = tuple(n for n, info in graph.layers.items() if info.kind not in UNSCANNED_KINDS)
    model = Model(text=text, spec=spec, weights=weights, sha256=None if weights is None else file_sha256(weights),
                  id=loaded.weights_hash, name=loaded.spec, architecture=type(loaded.module).__name__,
                  parameters=sum(p.numel() for p in loaded.module.parameters()), layers=layers, zoo=shipped)
    return model, loaded, graph


def plan(models, layers=None, what="circuits", options: Options | None = None, tool_version: str = "") -> list[Shard]:
    """The shards of a scan, in a fixed order (models as given, layers in model order).

    ``layers`` (names, or ``None`` for every layer with neurons of its own) must be in every model.
    """
    from circuits.labels.label import default_data

    options = options or Options()
    parts = parse_what(what)
    if isinstance(models, str):
        models = [models]
    if not models:
        raise UsageError("give at least one MODEL to scan (e.g. zoo:curve-cnn-s0)")
    if options.data is not None:
        data, digest = data_identity(options.data)
        options = dataclasses.replace(options, data=data, data_sha256=digest)
        if "labels" in parts and not data.startswith("toyworld"):
            raise UsageError(f"labels are scored on toy-world images, whose concepts are known; --data '{data}' is "
                             "not one: give --data toyworld[:TASK][:N][:SEED], or leave --data out")  # fmt: skip
    shards, seen = [], set()
    for text in dict.fromkeys(models):  # a model named twice is scanned once
        model, loaded, graph = describe(text)
        if (model.id, model.sha256) in seen:  # the same weights under other words (w.pt and ./w.pt)
            continue
        seen.add((model.id, model.sha256))
        labels_data = default_data(loaded)
        for layer in _layers(model, layers):
            info = graph.layers[layer]
            keyed = [Part(w, a, part_key(model, layer, w, a, tool_version))
                     for w in parts for a in [options.arguments(w, labels_data)]]  # fmt: skip
            shards.append(Shard(model, layer, info.kind, info.channels, keyed))
    return shards


def data_identity(spec: str) -> tuple[str, str | None]:
    """``(spec, sha256)``: a spec that names files made absolute, with the sha256 of their contents (a folder's
    files by sorted relative name); a generated spec as it is, with ``None``. A spec that is neither is refused
    here, before any model loads."""
    from circuits.data.spec import DATA_HELP, SCHEMES, split_augment

    spec = spec.strip()
    scheme = spec.partition(":")[0]
    if scheme == "augment":
        head, path = split_augment(spec)
        path = os.path.abspath(path)
        return ":".join(["augment", *head, path]), _files_sha256(path)
    if scheme in SCHEMES:
        return spec, None
    if not os.path.exists(spec):
        raise BadSpecError(f"data spec '{spec}' is neither a generated spec nor an existing path: {DATA_HELP}")
    path = os.path.abspath(spec)
    return path, _files_sha256(path)


def _files_sha256(path: str) -> str:
    if os.path.isfile(path):
        return file_sha256(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}\0{file_sha256(full)}\n".encode())
    return digest.hexdigest()


def _layers(model: Model, wanted) -> tuple[str, ...]:
    if not wanted:
        return model.layers
    for layer in wanted:
        if layer not in model.layers:
            raise UnknownNeuronError(f"layer '{layer}' is not a layer of {model.spec} with neurons to scan"
                                     f"{close_matches_hint(layer, model.layers)} (its layers: "
                                     f"{', '.join(model.layers)})")  # fmt: skip
    return tuple(dict.fromkeys(wanted))

"""Every picture of a layer's neurons, made and saved in one go: what `circuits pictures` runs.

:func:`make_gallery` optimises each neuron's pictures (one batch per kind), finds its top examples in the
data in one pass, and measures each picture's circuit agreement against them; :func:`write_gallery` saves
them as PNGs with one contact sheet per 32 neurons. Every entry's ``activation`` is the neuron's
pre-activation where it was read (the objective's position, else the strongest one, or the weakest for a
negative picture), so pictures and examples of a neuron are on one scale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from circuits.catalog.pictures import KINDS  # the kinds a picture can be, as the catalog stores them
from circuits.errors import UsageError

OBJECTIVES = ("channel", "neuron")
DIAGRAM_SIZE = 48  # pixels a picture takes inside a diagram's node


@dataclass
class Entry:
    """One picture of one neuron; ``rank`` is the copy (optimised 0, diverse 1..) or the example's rank."""

    neuron: str
    kind: str
    rank: int
    image: torch.Tensor
    activation: float | None
    agreement: float | None = None
    relative_activation: float | None = None
    field: torch.Tensor | None = None  # the receptive-field crop where a Neuron objective read it (sheets only)

    @property
    def file_name(self) -> str:
        channel = self.neuron.rpartition(":")[2]
        suffix = {"optimised": "", "diverse": f".diverse-{self.rank}", "negative": ".negative",
                  "example": f".example-{self.rank + 1}"}[self.kind]  # fmt: skip
        return f"{channel}{suffix}.png"


@dataclass
class Gallery:
    """A layer's pictures, in neuron order, and how each kind was made (``methods[kind]``)."""

    layer: str
    channels: list[int]
    entries: list[Entry]
    methods: dict = field(default_factory=dict)


def make_gallery(model, layer: str, channels=None, *, data="toyworld:512", objective: str = "channel",
                 steps: int = 256, copies: int = 1, diversity: float = 0.0, negative: bool = False, k: int = 9,
                 seed: int = 0,
                 device=None) -> Gallery:  # fmt: skip
    """Pictures of ``channels`` of ``layer`` (default: all): ``copies`` optimised ones each (the first is
    ``optimised``, the rest ``diverse``: other starts, pushed apart by ``diversity``), a ``negative`` one
    if asked, and with ``data`` (a
    data spec or a tensor; ``None`` for none) the top ``k`` examples and every optimised picture's circuit
    agreement."""
    from circuits.featvis import agreement as agree
    from circuits.featvis.examples import dataset_examples
    from circuits.featvis.objectives import Channel, Negative, Neuron
    from circuits.featvis.optimise import visualise
    from circuits.graph import build_graph

    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective '{objective}': use {' or '.join(OBJECTIVES)}")
    graph = build_graph(model)
    info = graph.layer(layer)
    channels = info.channel_list(channels)
    images = None
    if data is not None:
        from circuits.data.spec import load_data
        from circuits.graph.run import check_data

        images = load_data(data, graph.input_shape) if isinstance(data, str) else check_data(graph, data)
    reading = Neuron() if objective == "neuron" else Channel()
    shown = data if isinstance(data, str) or data is None else f"tensor of {len(images)} images"
    pictures = visualise(graph, info.name, channels, objective=reading, steps=steps, copies=copies, seed=seed,
                         diversity=diversity, device=device)  # fmt: skip
    methods = {"optimised": {"method": "visualise", **pictures.settings}}
    if copies > 1:
        methods["diverse"] = methods["optimised"]
    found, examples = None, None
    if images is not None:
        examples = dataset_examples(graph, info.name, images, k=min(k, len(images)), channels=channels, device=device)
        found = agree.circuit_agreement(graph, pictures, images, examples=examples, device=device)
        methods["example"] = {"method": "dataset_examples", "data": shown, "k": examples.index.shape[1],
                              "ranked_by": "pre-activation at the strongest position"}  # fmt: skip
        for kind in ("optimised", "diverse"):
            if kind in methods:
                methods[kind] = {**methods[kind], "agreement_data": shown}
    activation = found.activation if found is not None else _read(graph, info.name, pictures)
    fields = _fields(graph, info.name, pictures)
    entries = []
    for i, neuron in enumerate(pictures.neurons):
        copy = i % copies
        entries.append(Entry(neuron, "optimised" if copy == 0 else "diverse", copy, pictures.images[i],
                             _number(activation[i]), _number(found.agreement[i]) if found else None,
                             _number(found.relative_activation[i]) if found else None,
                             fields[i] if fields is not None and copy == 0 else None))  # fmt: skip
    if negative:
        low = visualise(graph, info.name, channels, objective=Negative(reading), steps=steps, seed=seed, device=device)
        methods["negative"] = {"method": "visualise", **low.settings}
        values = _read(graph, info.name, low, lowest=True)
        entries += [Entry(n, "negative", 0, low.images[i], _number(values[i])) for i, n in enumerate(low.neurons)]
    if examples is not None:
        for row, c in enumerate(examples.channels):
            entries += [Entry(f"{info.name}:{c}", "example", j, examples.crops[row, j], _number(examples.value[row, j]))
                        for j in range(examples.index.shape[1])]  # fmt: skip
    order = {c: i for i, c in enumerate(channels)}
    entries.sort(key=lambda e: (order[int(e.neuron.rpartition(":")[2])], KINDS.index(e.kind), e.rank))
    return Gallery(info.name, channels, entries, methods)


def node_pictures(model, nodes, *, steps: int = 128, seed: int = 0, device=None) -> dict[str, bytes]:
    """``{node: PNG}``: each ``LAYER:CHANNEL`` of ``nodes`` optimised at its map's centre and cropped to
    that position's receptive field, the picture a circuit diagram draws inside the node (Distill's circuit
    figures). One batch per layer; the model's input channels have no picture."""
    from circuits.featvis.objectives import Neuron
    from circuits.featvis.optimise import visualise
    from circuits.featvis.sheets import png_bytes
    from circuits.graph import build_graph

    graph = build_graph(model)
    by_layer: dict[str, list[int]] = {}
    for node in nodes:
        layer, channel = graph.neuron(node)
        if graph.layers[layer].kind != "input":
            by_layer.setdefault(layer, []).append(channel)
    out = {}
    for layer, channels in by_layer.items():
        pictures = visualise(graph, layer, sorted(set(channels)), objective=Neuron(), steps=steps, seed=seed,
                             device=device)  # fmt: skip
        fields = _fields(graph, layer, pictures)
        for i, neuron in enumerate(pictures.neurons):
            out[neuron] = png_bytes(fields[i] if fields is not None else pictures.images[i], size=DIAGRAM_SIZE)
    return {node: out[node] for node in nodes if node in out}


def write_gallery(gallery: Gallery, folder, model_name: str = "") -> tuple[list[dict], list[str]]:
    """Save every picture under ``folder/LAYER/`` and the contact sheets as ``folder/LAYER.sheet[-NN].png``.

    Returns (one ``{"neuron", "kind", "path", "activation", "agreement"}`` per picture, the sheet paths). Each
    file is written whole or not at all (a temporary file renamed into place)."""
    from circuits.featvis.sheets import PER_SHEET, SheetRow, contact_sheet, png_bytes

    folder = os.fspath(folder)
    where = os.path.join(folder, gallery.layer)
    os.makedirs(where, exist_ok=True)
    listed, rows = [], {}
    for entry in gallery.entries:
        path = os.path.join(where, entry.file_name)
        _write(path, png_bytes(entry.image))
        listed.append({"neuron": entry.neuron, "kind": entry.kind, "path": path, "activation": entry.activation,
                       "agreement": entry.agreement})  # fmt: skip
        row = rows.setdefault(entry.neuron, SheetRow(entry.neuron))
        row.cells.append((entry.image, _caption(entry)))
        if entry.field is not None:  # beside the examples, the part of the picture the neuron sees
            row.cells.append((entry.field, "its field"))
        if entry.kind == "optimised" and entry.agreement is not None:
            row.title = f"{entry.neuron}   agreement {entry.agreement:.2f}" + (
                f"   x{entry.relative_activation:.1f} of the best example" if entry.relative_activation else "")
    ordered = list(rows.values())
    pages = [ordered[i : i + PER_SHEET] for i in range(0, len(ordered), PER_SHEET)]
    sheets = []
    for number, page in enumerate(pages, 1):
        name = f"{gallery.layer}.sheet.png" if len(pages) == 1 else f"{gallery.layer}.sheet-{number:02d}.png"
        heading = f"{model_name} {gallery.layer}: pictures, then top examples (agreement: docs/pictures.md)".strip()
        path = os.path.join(folder, name)
        _write(path, contact_sheet(page, heading))
        sheets.append(path)
    return listed, sheets


def _fields(graph, layer: str, pictures):
    """Each picture's receptive-field crop at the position its objective read (None for whole-map objectives)."""
    from circuits.featvis.examples import field_crops

    if pictures.positions is None:
        return None
    return field_crops(graph, layer, pictures.images, pictures.positions)


def _caption(entry: Entry) -> str:
    name = {"optimised": "picture", "diverse": f"start {entry.rank + 1}", "negative": "negative",
            "example": f"top {entry.rank + 1}"}[entry.kind]  # fmt: skip
    return name if entry.activation is None else f"{name} {entry.activation:.1f}"


def _write(path: str, payload: bytes) -> None:
    partial = f"{path}.partial"
    with open(partial, "wb") as handle:
        handle.write(payload)
    os.replace(partial, path)


def _read(graph, layer: str, pictures, lowest: bool = False) -> torch.Tensor:
    """Each picture's neuron, read on the pre-activation (where the layer has one) at the objective's
    position, or at its strongest (weakest, for a negative picture) position in the picture."""
    preact = graph.layers[layer].preact is not None
    acts = graph.run(pictures.images, [layer], preact=preact)[layer]
    channels = torch.tensor([int(n.rpartition(":")[2]) for n in pictures.neurons])
    own = acts[torch.arange(len(channels)), channels]
    if own.dim() == 1:
        return own
    if pictures.positions is not None:
        return own[torch.arange(len(own)), pictures.positions[:, 0], pictures.positions[:, 1]]
    flat = own.flatten(1)
    return flat.min(1).values if lowest else flat.max(1).values


def _number(value) -> float | None:
    value = float(value)
    return None if value != value else round(value, 6)

"""A circuit as a layered diagram: one row per layer, edge colour by sign, width by strength, and each
edge's spatial kernel as a thumbnail on the edge (as in Distill's circuit figures)."""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path

import networkx as nx

from circuits.errors import UsageError
from circuits.render.engine import find_engine
from circuits.render.thumbnails import data_uri, kernel_png

POSITIVE, NEGATIVE = "#2166ac", "#b2182b"


def circuit_dot(circuit: nx.DiGraph, thumbnail_dir: Path | None = None, pictures: dict | None = None):
    """A ``graphviz.Digraph`` of the circuit; kernel thumbnails are written into ``thumbnail_dir``, and so
    are ``pictures`` (``{node: PNG bytes}``), each drawn inside its node above the node's name.

    Nodes and edges are laid out in the circuit's canonical order, so a circuit read back from JSON or
    the catalog gives the same DOT source as the one extracted.
    """
    import graphviz

    from circuits.circuit import as_circuit

    circuit = as_circuit(circuit)

    dot = graphviz.Digraph("circuit", graph_attr={"rankdir": "BT", "nodesep": "0.3", "ranksep": "0.6",
                                                  "fontname": "Helvetica"})  # fmt: skip
    dot.attr("node", shape="box", style="rounded,filled", fillcolor="#f7f7f7", fontname="Helvetica", fontsize="11")
    dot.attr("edge", fontname="Helvetica", fontsize="9", arrowsize="0.6")
    by_layer: dict[str, list[str]] = {}
    for node, attrs in circuit.sorted_nodes():
        by_layer.setdefault(attrs["layer"], []).append(node)
    for layer, nodes in by_layer.items():
        with dot.subgraph(name=f"row_{_ident(layer)}") as row:
            row.attr(rank="same")
            for node in sorted(nodes, key=lambda n: circuit.nodes[n]["channel"]):
                attrs = circuit.nodes[node]
                # a label is text, never DOT: escape() keeps its backslashes and <...> literal
                label = node if not attrs.get("label") else f"{node}\n{graphviz.escape(str(attrs['label']))}"
                fill = "#fee8c8" if attrs["depth"] == 0 else "#f7f7f7"
                if thumbnail_dir is not None and pictures and node in pictures:
                    path = thumbnail_dir / f"n_{_ident(node)}.png"
                    path.write_bytes(pictures[node])
                    text = "<BR/>".join(html.escape(part) for part in [node, str(attrs.get("label") or "")] if part)
                    label = (f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD><IMG SRC="{html.escape(str(path))}"/>'
                             f'</TD></TR><TR><TD>{text}</TD></TR></TABLE>>')  # fmt: skip
                row.node(_ident(node), label=label, fillcolor=fill, tooltip=node)
    edges = circuit.sorted_edges()
    weights = [abs(a["weight"]) for _, _, a in edges] or [1.0]
    top = max(weights) or 1.0
    for i, (source, target, attrs) in enumerate(edges):
        colour = POSITIVE if attrs["weight"] >= 0 else NEGATIVE
        width = 0.6 + 3.4 * abs(attrs["weight"]) / top
        label = f"{attrs['weight']:+.2f}"
        kernel = attrs.get("kernel")
        if thumbnail_dir is not None and kernel is not None and _is_spatial(kernel):
            path = thumbnail_dir / f"k{i}.png"
            path.write_bytes(kernel_png(kernel))
            label = (f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD><IMG SRC="{html.escape(str(path))}"/>'
                     f'</TD></TR><TR><TD>{html.escape(label)}</TD></TR></TABLE>>')  # fmt: skip
        dot.edge(_ident(source), _ident(target), label=label, color=colour, penwidth=f"{width:.2f}",
                 tooltip=f"{source} -> {target}: {attrs['weight']:+.4f}")  # fmt: skip
    return dot


def render_circuit(circuit: nx.DiGraph, out: str | Path, pictures: dict | None = None) -> Path:
    """Write the diagram to ``out`` (.svg or .png), with ``pictures`` (``{node: PNG bytes}``) inside their
    nodes. SVG files embed their thumbnails and pictures, so they travel alone.
    Drawn by the system's graphviz ``dot`` when installed, else by the bundled graphviz-pure (engine.py)."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in {"svg", "png"}:
        raise UsageError(f"cannot render to '{out}': use a file name ending in .svg or .png")
    from circuits.pyfiles import write_atomic

    data = _draw(circuit, fmt, pictures)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, data)
    return out


def circuit_svg(circuit: nx.DiGraph) -> str:
    """The diagram as SVG text with its thumbnails embedded (what Jupyter shows for a Circuit)."""
    return _draw(circuit, "svg").decode()


def _draw(circuit, fmt: str, pictures: dict | None = None) -> bytes:
    engine = find_engine()
    with tempfile.TemporaryDirectory() as tmp:
        dot = circuit_dot(circuit, Path(tmp), pictures)
        data = engine.draw(dot.source, fmt)
        if fmt == "svg":
            data = _embed_images(data.decode()).encode()
    return data


def _embed_images(svg: str) -> str:
    def inline(match):
        path = Path(html.unescape(match.group(2)))
        return f'{match.group(1)}="{data_uri(path.read_bytes())}"' if path.is_file() else match.group(0)

    return re.sub(r'(xlink:href|href)="([^"]+\.png)"', inline, svg)


def _is_spatial(kernel) -> bool:
    return bool(kernel) and isinstance(kernel[0], list) and len(kernel) * len(kernel[0]) > 1


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)

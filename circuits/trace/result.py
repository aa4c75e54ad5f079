"""Result objects of tracing: plain tensors plus the names of the neurons they are about."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch

from circuits.errors import UnknownNeuronError, close_matches_hint
from circuits.trace.kernels import KernelSet


@dataclass(frozen=True)
class Edge:
    """One weighted edge ``source -> target`` (neurons as ``LAYER:CHANNEL``)."""

    source: str
    target: str
    weight: float  # signed strength: kernel sum (weights) or mean attribution
    magnitude: float
    kernel: torch.Tensor | None


class Weights:
    """Kernels from one or more source layers into one target layer.

    ``tensor`` is ``[target_channels, source_channels, kh, kw]`` when there is one source layer;
    ``kernel_sets`` holds one :class:`KernelSet` per source layer otherwise.
    """

    method = "weights"

    def __init__(self, kernel_sets: list[KernelSet], target: str, target_channels: int):
        self.kernel_sets = kernel_sets
        self.target = target
        self.target_channels = target_channels

    def __repr__(self):
        parts = ", ".join(f"{k.source}{tuple(k.kernels.shape)}" for k in self.kernel_sets)
        kind = "expanded" if self.expanded else "direct"
        return f"Weights({kind}: {parts} -> {self.target})"

    def _repr_html_(self) -> str:
        strengths = [(k.source, k.kernels.flatten(2).sum(-1)) for k in self.kernel_sets]
        return _strongest_html(repr(self), strengths, self.target, "strength")

    @property
    def expanded(self) -> bool:
        return any(k.expanded for k in self.kernel_sets)

    @property
    def sources(self) -> list[str]:
        return [k.source for k in self.kernel_sets]

    @property
    def tensor(self) -> torch.Tensor:
        if len(self.kernel_sets) != 1:
            raise ValueError(f"{len(self.kernel_sets)} source layers: use .kernels(source) or .kernel_sets")
        return self.kernel_sets[0].kernels

    def kernels(self, source: str) -> torch.Tensor:
        """The kernels from source layer ``source``: ``[target channels, source channels, *kernel]``."""
        for k in self.kernel_sets:
            if k.source == source:
                return k.kernels
        raise UnknownNeuronError(
            f"'{source}' is not a source of these weights into '{self.target}'"
            f"{close_matches_hint(str(source), self.sources)} (sources: {', '.join(self.sources) or 'none'})"
        )

    @property
    def source_names(self) -> list[str]:
        return [f"{k.source}:{c}" for k in self.kernel_sets for c in range(k.kernels.shape[1])]

    @property
    def target_names(self) -> list[str]:
        return [f"{self.target}:{c}" for c in range(self.target_channels)]

    def edges(self, target_channel: int) -> list[Edge]:
        """Every input edge of one target neuron, across all source layers, in source order."""
        out = []
        for ks in self.kernel_sets:
            kernels = ks.kernels[target_channel]
            strength = kernels.flatten(1).sum(-1)
            magnitude = kernels.flatten(1).norm(dim=-1)
            for c in range(kernels.shape[0]):
                out.append(
                    Edge(f"{ks.source}:{c}", f"{self.target}:{target_channel}", float(strength[c]),
                         float(magnitude[c]), kernels[c])
                )  # fmt: skip
        return out

    def top_k(self, k: int, target_channel: int) -> list[Edge]:
        """The ``k`` strongest inputs by |strength| over all source layers; negative ones kept."""
        return _rank(self.edges(target_channel))[:k]

    def to_networkx(self, k: int | None = None) -> nx.DiGraph:
        return _graph([e for t in range(self.target_channels) for e in _rank(self.edges(t))[:k]], self.method)


class Attribution:
    """Edge attributions on data: ``tensor[target_channel, source_channel]`` (see docs/neuron-graph.md)."""

    method = "attribution"

    def __init__(self, tensor: torch.Tensor, source: str, target: str, n_images: int):
        self.tensor = tensor
        self.source = source
        self.target = target
        self.n_images = n_images
        self.validation: dict | None = None
        self.route: str | None = None  # "kernel" (one weight-gradient pass) or "batched" (vmapped backward)
        self.direct = False  # True: the target's other direct sources were held (the neuron graph's edges)

    def __repr__(self):
        return f"Attribution({self.source} -> {self.target}, {tuple(self.tensor.shape)}, {self.n_images} images)"

    def _repr_html_(self) -> str:
        return _strongest_html(repr(self), [(self.source, self.tensor)], self.target, "attribution")

    @property
    def source_names(self) -> list[str]:
        return [f"{self.source}:{c}" for c in range(self.tensor.shape[1])]

    @property
    def target_names(self) -> list[str]:
        return [f"{self.target}:{c}" for c in range(self.tensor.shape[0])]

    def edges(self, target_channel: int) -> list[Edge]:
        row = self.tensor[target_channel]
        return [
            Edge(f"{self.source}:{c}", f"{self.target}:{target_channel}", float(row[c]), abs(float(row[c])), None)
            for c in range(row.shape[0])
        ]

    def top_k(self, k: int, target_channel: int) -> list[Edge]:
        return _rank(self.edges(target_channel))[:k]

    def to_networkx(self, k: int | None = None) -> nx.DiGraph:
        return _graph([e for t in range(self.tensor.shape[0]) for e in _rank(self.edges(t))[:k]], self.method)


def _rank(edges: list[Edge]) -> list[Edge]:
    # |strength| first, then kernel magnitude (zero-sum kernels), then name so rankings are deterministic
    return sorted(edges, key=lambda e: (-abs(e.weight), -e.magnitude, e.source))


def _graph(edges: list[Edge], method: str) -> nx.DiGraph:
    g = nx.DiGraph()
    for e in edges:
        for node in (e.source, e.target):
            layer, _, ch = node.rpartition(":")
            g.add_node(node, layer=layer, channel=int(ch))
        g.add_edge(e.source, e.target, weight=e.weight, magnitude=e.magnitude, sign=1 if e.weight >= 0 else -1,
                   kernel=None if e.kernel is None else e.kernel.tolist(), method=method)  # fmt: skip
    return g


def _strongest_html(title: str, scores: list[tuple[str, torch.Tensor]], target: str, what: str, n: int = 12) -> str:
    """Jupyter's view of a result: its repr and the ``n`` strongest edges over all channel pairs."""
    import html

    rows = []
    for source, table in scores:  # table: [target channels, source channels]
        flat = table.flatten()
        for i in flat.abs().topk(min(n, flat.numel())).indices.tolist():
            t, c = divmod(i, table.shape[1])
            rows.append((abs(float(flat[i])), f"{source}:{c}", f"{target}:{t}", float(flat[i])))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    cells = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(t)}</td>"
                    f"<td style='color:{'#2166ac' if w >= 0 else '#b2182b'}'>{w:+.4f}</td></tr>" for _, s, t, w in rows[:n])
    return (f"<p><code>{html.escape(title)}</code></p><table><tr><th>source</th><th>target</th><th>{what}</th></tr>"
            f"{cells}</table>")

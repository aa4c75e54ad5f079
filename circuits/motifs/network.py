"""Network motifs: small wiring patterns that occur more often than in randomised networks.

Milo et al., "Network Motifs: Simple Building Blocks of Complex Networks" (Science 298, 2002): count each
small subgraph in the real network, count it again in many random networks with the same in- and
out-degree of every node, and report the z-score ``(real - mean_random) / std_random``. Here the networks
are extracted neuron graphs (:func:`circuits.extraction.extract` circuits, or :func:`neuron_graph`), whose
edges carry a ``sign`` (+1 excitation, -1 inhibition).

Patterns (:data:`PATTERNS`, node-induced, counted with networkx's VF2 subgraph matching and divided by
each pattern's automorphisms so every instance counts once):

- ``feed-forward-loop``: ``X -> Y -> Z`` and ``X -> Z`` (in a layered network only skip paths, residual
  adds and concats make them);
- ``fan-in``: ``X -> Z <- Y`` with no edge between ``X`` and ``Y``;
- ``mutual-inhibition``: two sources that each excite one target and inhibit the other
  (``A -> U`` +, ``B -> U`` -, ``B -> V`` +, ``A -> V`` -): the feed-forward form of mutual inhibition.

The random baseline swaps the targets of two edges (``a -> b``, ``c -> d`` becomes ``a -> d``, ``c -> b``)
when no self-loop or duplicate edge results and both edges have the same sign, so every node keeps its
signed in- and out-degree. With ``layered=True`` (the default) only edges between the same pair of layers
are swapped, so the random networks keep the architecture's layer-to-layer wiring: what stands out is then
wiring *within* it, not the architecture itself. Everything is seeded.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import networkx as nx
from networkx.algorithms import isomorphism

from circuits.motifs.report import Motif

N_RANDOM = 50
Z_MIN = 3.0
MIN_COUNT = 3
SWAPS_PER_EDGE = 10


def _pattern(edges) -> nx.DiGraph:
    g = nx.DiGraph()
    for a, b, sign in edges:
        g.add_edge(a, b, sign=sign)
    return g


PATTERNS = {
    "feed-forward-loop": _pattern([("x", "y", None), ("y", "z", None), ("x", "z", None)]),
    "fan-in": _pattern([("x", "z", None), ("y", "z", None)]),
    "mutual-inhibition": _pattern([("a", "u", 1), ("b", "u", -1), ("b", "v", 1), ("a", "v", -1)]),
}


def _edge_match(real: dict, wanted: dict) -> bool:
    return wanted.get("sign") is None or real.get("sign") == wanted["sign"]


def instances(graph: nx.DiGraph, pattern: nx.DiGraph) -> list[tuple[str, ...]]:
    """Every node-induced occurrence of ``pattern`` in ``graph``, once each: node tuples in the pattern's
    node order (the smallest of the tuples its automorphisms give), sorted."""
    matcher = isomorphism.DiGraphMatcher(graph, pattern, edge_match=_edge_match)
    order = list(pattern.nodes)
    autos = _automorphisms(pattern)
    found = set()
    for mapping in matcher.subgraph_isomorphisms_iter():
        inverse = {p: g for g, p in mapping.items()}
        found.add(min(tuple(inverse[auto[p]] for p in order) for auto in autos))
    return sorted(found)


def count(graph: nx.DiGraph, pattern: nx.DiGraph) -> int:
    """How many node-induced occurrences of ``pattern`` ``graph`` has (each counted once)."""
    matcher = isomorphism.DiGraphMatcher(graph, pattern, edge_match=_edge_match)
    n = sum(1 for _ in matcher.subgraph_isomorphisms_iter())
    return n // len(_automorphisms(pattern))


def _automorphisms(pattern: nx.DiGraph) -> list[dict]:
    matcher = isomorphism.DiGraphMatcher(pattern, pattern, edge_match=_edge_match)
    return list(matcher.isomorphisms_iter())


def randomise(graph: nx.DiGraph, seed: int = 0, swaps_per_edge: int = SWAPS_PER_EDGE,
              layered: bool = True) -> nx.DiGraph:  # fmt: skip
    """A degree-preserving random copy of ``graph`` (Milo et al. 2002): targets of same-sign edges swapped,
    ``swaps_per_edge * E`` attempts; with ``layered`` only between edges joining the same pair of layers."""
    rng = random.Random(seed)
    edges = sorted(graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1])))
    current = [(a, b, d.get("sign")) for a, b, d in edges]
    present = {(a, b) for a, b, _ in current}

    def group(i):
        a, b, sign = current[i]
        layers = (graph.nodes[a].get("layer"), graph.nodes[b].get("layer")) if layered else None
        return sign, layers

    for _ in range(swaps_per_edge * len(current)):
        if len(current) < 2:
            break
        i, j = rng.randrange(len(current)), rng.randrange(len(current))
        (a, b, s1), (c, d, s2) = current[i], current[j]
        if i == j or group(i) != group(j) or a == d or c == b:
            continue
        if (a, d) in present or (c, b) in present:
            continue
        present -= {(a, b), (c, d)}
        present |= {(a, d), (c, b)}
        current[i], current[j] = (a, d, s1), (c, b, s2)
    out = nx.DiGraph()
    out.add_nodes_from(graph.nodes(data=True))
    for a, b, sign in current:
        out.add_edge(a, b, sign=sign)
    return out


@dataclass
class MotifCount:
    """One pattern in one graph: the real count, the random counts, and the z-score."""

    pattern: str
    count: int
    random_counts: list[int]
    instances: list[tuple[str, ...]]

    @property
    def mean(self) -> float:
        return sum(self.random_counts) / len(self.random_counts) if self.random_counts else 0.0

    @property
    def std(self) -> float:
        n = len(self.random_counts)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((c - m) ** 2 for c in self.random_counts) / (n - 1))

    @property
    def z(self) -> float | None:
        """``(count - mean) / std``; ``None`` when the random counts do not vary (then see ``p``)."""
        return (self.count - self.mean) / self.std if self.std > 0 else None

    @property
    def p(self) -> float:
        """Share of random networks with at least the real count (with the usual +1 correction)."""
        hits = sum(c >= self.count for c in self.random_counts)
        return (hits + 1) / (len(self.random_counts) + 1)


def motif_counts(graph: nx.DiGraph, patterns: dict | None = None, n_random: int = N_RANDOM, seed: int = 0,
                 layered: bool = True, swaps_per_edge: int = SWAPS_PER_EDGE) -> list[MotifCount]:  # fmt: skip
    """Real and randomised counts of every pattern; random network ``k`` uses seed ``seed + k``."""
    patterns = PATTERNS if patterns is None else patterns
    randoms = [randomise(graph, seed + k, swaps_per_edge, layered) for k in range(n_random)]
    out = []
    for name, pattern in patterns.items():
        found = instances(graph, pattern)
        out.append(MotifCount(name, len(found), [count(r, pattern) for r in randoms], found))
    return out


def network_motifs(graph: nx.DiGraph, *, patterns: dict | None = None, n_random: int = N_RANDOM, seed: int = 0,
                   layered: bool = True, z_min: float = Z_MIN, min_count: int = MIN_COUNT,
                   max_instances: int = 20) -> list[Motif]:  # fmt: skip
    """Patterns over-represented in ``graph`` against its randomised copies.

    A pattern is reported when it occurs at least ``min_count`` times, its z-score is at least ``z_min``
    (or the random networks never reach its count), and fewer than 1% of random networks reach it (with
    ``n_random`` >= 100; with fewer, the best attainable p-value). ``score`` is ``1 - p``; the evidence
    holds the count, the random mean and standard deviation, ``z`` and the first ``max_instances``
    instances, whose neurons are the ``members``.
    """
    motifs = []
    p_max = max(0.01, 1.0 / (n_random + 1))
    for result in motif_counts(graph, patterns, n_random, seed, layered):
        z = result.z
        strong = (z is not None and z >= z_min) or (z is None and result.count > result.mean)
        if result.count < min_count or not strong or result.p > p_max:
            continue
        shown = result.instances[:max_instances]
        members = tuple(sorted({n for inst in shown for n in inst}, key=_neuron_order))
        evidence = {
            "pattern": result.pattern, "count": result.count, "random_mean": result.mean,
            "random_std": result.std, "z": z, "p": result.p, "n_random": n_random, "seed": seed,
            "layered": layered, "instances": [list(i) for i in shown],
        }  # fmt: skip
        motifs.append(Motif("network", None, None, members, 1.0 - result.p, evidence))
    return motifs


def _neuron_order(node: str):
    layer, _, channel = str(node).rpartition(":")
    return (layer, int(channel)) if channel.isdigit() else (str(node), -1)


def neuron_graph(ctx, layer: str | None = None, top_k: int = 4) -> nx.DiGraph:
    """The model's neuron graph: every neuron's ``top_k`` strongest direct inputs (by |strength|, signs
    kept), over every layer with weights, or over ``layer`` and its direct sources' own inputs (two steps
    back, so skip paths show up). Nodes carry ``layer`` and ``channel``, edges ``weight`` and ``sign``."""
    if layer is None:
        targets = ctx.targets()
    else:
        first = [p for p in ctx.parts(layer) if ctx.graph.layers[p].preact is not None]
        second = [s for t in first for s in ctx.graph.layers[t].sources if ctx.graph.layers[s].preact is not None]
        targets = list(dict.fromkeys(first + second))
    g = nx.DiGraph()
    for target in targets:
        weights = ctx.direct(target)
        for channel in range(ctx.graph.layers[target].channels):
            for edge in weights.top_k(top_k, channel):
                source = ctx.graph.resolve(*_split(edge.source))
                if ctx.graph.layers[source[0]].kind == "input":
                    continue
                s, t = f"{source[0]}:{source[1]}", edge.target
                for node, (lay, ch) in ((s, source), (t, (target, channel))):
                    g.add_node(node, layer=lay, channel=ch)
                g.add_edge(s, t, weight=edge.weight, sign=1 if edge.weight >= 0 else -1)
    return g


def _split(neuron: str) -> tuple[str, int]:
    layer, _, channel = neuron.rpartition(":")
    return layer, int(channel)

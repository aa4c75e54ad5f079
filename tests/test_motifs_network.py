"""Network motifs (Milo et al. 2002): counts checked by hand on a small graph, and z-scores against a
seeded, degree-preserving randomised baseline."""

from collections import Counter

import networkx as nx
import pytest

from circuits.motifs.network import PATTERNS, count, instances, motif_counts, network_motifs, randomise


def graph(edges):
    """Nodes named LAYER:CHANNEL; edges (source, target, sign)."""
    g = nx.DiGraph()
    for a, b, sign in edges:
        for node in (a, b):
            g.add_node(node, layer=node.split(":")[0])
        g.add_edge(a, b, sign=sign)
    return g


@pytest.fixture
def small():
    # L0: a, b    L1: c, d    L2: e
    # a excites c and inhibits d, b the reverse (mutual inhibition); c, d and a (a skip edge) feed e
    return graph([
        ("L0:a", "L1:c", 1), ("L0:b", "L1:c", -1), ("L0:b", "L1:d", 1), ("L0:a", "L1:d", -1),
        ("L1:c", "L2:e", 1), ("L1:d", "L2:e", 1), ("L0:a", "L2:e", 1),
    ])  # fmt: skip


def test_counts_match_a_hand_count(small):
    # feed-forward loops: a->c->e with a->e, and a->d->e with a->e
    assert instances(small, PATTERNS["feed-forward-loop"]) == [("L0:a", "L1:c", "L2:e"), ("L0:a", "L1:d", "L2:e")]
    assert count(small, PATTERNS["feed-forward-loop"]) == 2
    # induced fan-in: {a, b} -> c, {a, b} -> d, {c, d} -> e; (a, c) -> e and (a, d) -> e are joined, so not
    assert count(small, PATTERNS["fan-in"]) == 3
    # one signed cross-inhibition: a +c -d, b +d -c (its two labellings are one instance)
    assert instances(small, PATTERNS["mutual-inhibition"]) == [("L0:a", "L1:c", "L0:b", "L1:d")]
    assert count(small, PATTERNS["mutual-inhibition"]) == 1


def test_randomisation_keeps_signed_degrees_and_layer_wiring(small):
    big = graph([(f"A:{i}", f"B:{(i + k) % 9}", 1 if k else -1) for i in range(9) for k in range(3)]
                + [(f"B:{i}", f"C:{(2 * i + k) % 9}", 1) for i in range(9) for k in range(2)])  # fmt: skip

    def signature(g):
        out = Counter((a, d["sign"]) for a, _, d in g.edges(data=True))
        into = Counter((b, d["sign"]) for _, b, d in g.edges(data=True))
        layers = Counter((a.split(":")[0], b.split(":")[0]) for a, b in g.edges)
        return out, into, layers

    shuffled = randomise(big, seed=1)
    assert signature(shuffled) == signature(big)
    assert set(shuffled.edges) != set(big.edges)
    assert nx.utils.graphs_equal(randomise(big, seed=1), shuffled)  # seeded
    assert set(randomise(big, seed=2).edges) != set(shuffled.edges)


def aligned_loops(n=12):
    """A_i -> B_i -> C_i with the skip A_i -> C_i: n feed-forward loops that random wiring rarely keeps."""
    edges = []
    for i in range(n):
        edges += [(f"A:{i}", f"B:{i}", 1), (f"B:{i}", f"C:{i}", 1), (f"A:{i}", f"C:{i}", 1)]
        edges += [(f"A:{i}", f"B:{(i + 5) % n}", 1)]
    return graph(edges)


def test_z_scores_against_the_seeded_baseline():
    g = aligned_loops()
    results = {r.pattern: r for r in motif_counts(g, n_random=40, seed=7)}
    ffl = results["feed-forward-loop"]
    assert ffl.count == 12  # A_i's other route, through B_(i+5), ends at C_(i+5), which A_i does not reach
    counts = ffl.random_counts
    mean = sum(counts) / len(counts)
    std = (sum((c - mean) ** 2 for c in counts) / (len(counts) - 1)) ** 0.5
    assert ffl.z == pytest.approx((ffl.count - mean) / std)
    assert ffl.z > 3
    again = {r.pattern: r for r in motif_counts(g, n_random=40, seed=7)}
    assert again["feed-forward-loop"].random_counts == counts
    reported = network_motifs(g, n_random=100, seed=7)
    assert [m.evidence["pattern"] for m in reported] == ["feed-forward-loop"]
    assert reported[0].score == pytest.approx(1 - reported[0].evidence["p"]) and reported[0].score > 0.99


def test_a_random_graph_has_no_motifs():
    import random

    rng = random.Random(3)
    edges = [(f"A:{i}", f"B:{j}", rng.choice((1, -1))) for i in range(10) for j in range(10) if rng.random() < 0.3]
    edges += [(f"B:{i}", f"C:{j}", rng.choice((1, -1))) for i in range(10) for j in range(10) if rng.random() < 0.3]
    edges += [(f"A:{i}", f"C:{j}", 1) for i in range(10) for j in range(10) if rng.random() < 0.1]
    assert network_motifs(graph(edges), n_random=50, seed=0) == []

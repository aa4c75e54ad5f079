"""Catalog benchmark: ingest speed against raw sqlite3, and full-text search latency.

Run:  python benchmarks/bench_catalog.py            (about 10 minutes on 2 shared cores)
      python benchmarks/bench_catalog.py --scale 0.1 (a quick look)

1. Ingest 1M edges (1,000 circuits x 1,000 edges, 3x3 kernels) with ``Catalog.add_circuit`` in one
   transaction, against the baseline of raw ``sqlite3.executemany`` writing the same circuit and edge rows
   (kernels serialised to JSON) into an identical catalog file, also in one transaction. The catalog
   additionally validates the payload, hashes it, and writes layers and neurons. The two run in step, circuit
   by circuit, so that a shared machine's load falls on both alike; wall and CPU time are reported.
2. Build a 100,000-circuit catalog (10 edges each), label 50,000 neurons, add motifs and 10,000 modules, then
   time ``Catalog.search`` (FTS5) against the same neuron search done with ``LIKE`` scans, and ``show`` of a
   neuron, which lists the circuits it is in by reading every circuit's nodes.
Ratios are measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from circuits.catalog import Catalog  # noqa: E402
from circuits.catalog.search import like_search  # noqa: E402

MODEL = hashlib.sha256(b"benchmark model").hexdigest()
RARE = [a + b + c for a in ("ka", "lo", "mi", "ter", "su", "van", "pre", "dol") for b in ("ri", "no", "ca", "the", "lu")
        for c in ("x", "m", "nd", "st", "ph", "l", "r", "k")]  # 320 less common words
WORDS = ("curve edge texture fur eye dog wheel window grid circle spiral color contrast frequency boundary "
         "orientation snout head leg car arc corner line stripe dot blob shadow gradient").split()


def make_circuit(i: int, n_edges: int, rng: random.Random) -> dict:
    target = f"mixed4b:{i % 512}"
    sources = [f"mixed4a:{(i * 31 + k) % 1024}" for k in range(n_edges)]  # distinct for n_edges <= 1024
    nodes = [{"id": target, "layer": "mixed4b", "channel": i % 512, "depth": 0, "label": None}]
    nodes += [{"id": s, "layer": "mixed4a", "channel": int(s.split(":")[1]), "depth": 1, "label": None} for s in sources]
    edges = []
    for s in sources:
        kernel = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(3)]
        weight = sum(map(sum, kernel))
        # the attributes `extract --json` prints beside weight and kernel (stored whole since schema v3)
        edges.append({"source": s, "target": target, "weight": weight, "strength": weight, "sign": 1 if weight >= 0 else -1,
                      "kernel": kernel, "expanded": False, "magnitude": sum(v * v for row in kernel for v in row) ** 0.5,
                      "method": "weights"})
    return {"model": "bench", "target": target, "method": "direct", "nodes": nodes, "edges": edges,
            "parameters": {"run": i}}


EDGE_COLUMNS = {"source", "target", "weight", "kernel"}


class RawWriter:
    """The baseline: the same circuit (with its nodes) and edge rows, into an identical catalog file with executemany."""

    def __init__(self, path):
        with Catalog(path) as cat:
            cat.add_model(MODEL, "bench")
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("BEGIN")
        self.count = 0

    def add(self, payload):
        cid = f"{self.count:064d}"
        self.count += 1
        nodes = json.dumps([{"depth": n["depth"], "id": n["id"]} for n in payload["nodes"]])
        attributes = json.dumps([[e["source"], e["target"], {k: v for k, v in e.items() if k not in EDGE_COLUMNS}]
                                 for e in payload["edges"]])
        self.conn.execute("INSERT INTO circuits (id, model, target, method, parameters, created, nodes, edge_attributes) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (cid, MODEL, payload["target"], payload["method"], json.dumps(payload["parameters"]), "now",
                           nodes, attributes))
        self.conn.executemany("INSERT INTO edges VALUES (?, ?, ?, ?, ?)",
                              [(cid, e["source"], e["target"], e["weight"], json.dumps(e["kernel"]))
                               for e in payload["edges"]])

    def close(self):
        self.conn.execute("COMMIT")
        self.conn.close()


class CatalogWriter:
    """``Catalog.add_circuit`` for every circuit, all in one transaction."""

    def __init__(self, path):
        self.cat = Catalog(path)
        self.cat.add_model(MODEL, "bench")
        self.transaction = self.cat.transaction()
        self.transaction.__enter__()

    def add(self, payload):
        self.cat.add_circuit(MODEL, payload)

    def close(self):
        self.transaction.__exit__(None, None, None)
        self.cat.close()


def ingest_pass(tmp, circuits, rep):
    """Both writers in step, one circuit at a time, alternating which goes first.

    The machine is shared: interleaving circuit by circuit gives both sides the same load on average, so the
    ratio holds still while absolute times wander. Wall and CPU (process) time are both summed per side.
    """
    paths = {side: os.path.join(tmp, f"{side}{rep}.db") for side in ("raw", "catalog")}
    wall, cpu, writers = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0.0), {}

    def timed(side, call, *args):
        w0, c0 = time.perf_counter(), time.process_time()
        result = call(*args)
        wall[side] += time.perf_counter() - w0
        cpu[side] += time.process_time() - c0
        return result

    for side, cls in (("raw", RawWriter), ("catalog", CatalogWriter)):
        writers[side] = timed(side, cls, paths[side])
    for i, payload in enumerate(circuits):
        for side in (("raw", "catalog") if i % 2 == 0 else ("catalog", "raw")):
            timed(side, writers[side].add, payload)
    for side in paths:
        timed(side, writers[side].close)
        os.remove(paths[side])
    return wall, cpu


def bench_ingest(tmp, scale, rng, repeats):
    """Mean times per pass; ratios are the median over passes (a disk stall in one side's commit skews a pass)."""
    n_circuits = max(1, int(1000 * scale))
    circuits = [make_circuit(i, 1000, rng) for i in range(n_circuits)]
    edges = sum(len(c["edges"]) for c in circuits)
    passes = [ingest_pass(tmp, circuits, rep) for rep in range(repeats)]
    ratios = [wall["catalog"] / wall["raw"] for wall, _ in passes]
    cpu_ratios = [cpu["catalog"] / cpu["raw"] for _, cpu in passes]
    return {"circuits": n_circuits, "edges": edges,
            "raw_s": statistics.mean(w["raw"] for w, _ in passes), "catalog_s": statistics.mean(w["catalog"] for w, _ in passes),
            "raw_cpu_s": statistics.mean(c["raw"] for _, c in passes),
            "catalog_cpu_s": statistics.mean(c["catalog"] for _, c in passes),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios}


def bench_search(tmp, scale, rng):
    n_circuits = max(10, int(100_000 * scale))
    path = os.path.join(tmp, "search.db")
    start = time.perf_counter()
    with Catalog(path) as cat:
        cat.add_model(MODEL, "bench", layers=[f"layer{k}" for k in range(100)])
        with cat.transaction():
            ids = [cat.add_circuit(MODEL, make_circuit(i, 10, rng)) for i in range(n_circuits)]
        n_labels = max(10, n_circuits // 2)
        with cat.transaction():
            for k in range(n_labels):
                text = " ".join(rng.sample(WORDS, 2)) + f" {rng.choice(RARE)} detector {k}"
                notes = " ".join(rng.sample(WORDS, 5)) if k % 4 == 0 else None
                cat.label(MODEL, f"layer{k % 100}:{k // 100}", text, notes=notes)
            for k, cid in enumerate(ids[: n_circuits // 10]):
                cat.add_module(cid, f"def circuit_{k}(x):\n    return relu(conv(x, W_{rng.choice(WORDS)}))\n", {"r2": 0.9})
            for kind in ("equivariance", "union", "inhibition", "polysemantic"):
                cat.add_motifs(MODEL, {"model": "bench", "motifs": [
                    {"kind": kind, "transform": t, "target": None, "members": ["mixed4a:1"], "score": 0.5, "evidence": {}}
                    for t in ("rotate90", "reflect", None)]})
        build_s = time.perf_counter() - start
        queries = [rng.choice((rng.choice(RARE), f"{rng.choice(WORDS)} {rng.choice(RARE)}", rng.choice(WORDS)))
                   for _ in range(200)]  # a rare word, a common and a rare word, or one common word
        fts, like, hits = [], [], 0
        for q in queries:
            t0 = time.perf_counter()
            hits += len(cat.search(q, limit=20))
            fts.append(time.perf_counter() - t0)
        for q in queries[:50]:
            t0 = time.perf_counter()
            like_search(cat, q, limit=20)
            like.append(time.perf_counter() - t0)
        shows, members = [], 0  # "which circuits contain this neuron": reads every circuit's nodes
        for k in rng.sample(range(1024), 20):
            t0 = time.perf_counter()
            members += len(cat.show(f"bench/mixed4a:{k}")["circuits"])
            shows.append(time.perf_counter() - t0)
        neurons = cat.value("SELECT count(*) FROM neurons WHERE label IS NOT NULL")
    fts_ms, like_ms = statistics.median(fts) * 1e3, statistics.median(like) * 1e3
    return {"circuits": n_circuits, "labelled_neurons": neurons, "build_s": build_s, "queries": len(queries),
            "mean_hits": hits / len(queries), "fts_median_ms": fts_ms,
            "fts_p95_ms": sorted(fts)[int(0.95 * len(fts))] * 1e3, "like_median_ms": like_ms,
            "like_over_fts": like_ms / fts_ms, "file_mb": os.path.getsize(path) / 1e6,
            "show_neuron_median_ms": statistics.median(shows) * 1e3, "mean_member_of": members / len(shows)}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes (1.0 = 1M edges, 100k circuits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="ingest passes (the median ratio is reported)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        ingest = bench_ingest(tmp, args.scale, rng, args.repeats)
        print(f"ingest {ingest['edges']:,} edges in {ingest['circuits']:,} circuits, mean of {args.repeats} passes: raw "
              f"executemany {ingest['raw_s']:.2f} s, Catalog.add_circuit {ingest['catalog_s']:.2f} s; ratio (median) "
              f"{ingest['ratio']:.2f}x (goal <= 1.5x; per pass {', '.join(f'{r:.2f}' for r in ingest['ratios'])}); "
              f"CPU time {ingest['raw_cpu_s']:.2f} s vs {ingest['catalog_cpu_s']:.2f} s, ratio {ingest['cpu_ratio']:.2f}x "
              f"(per pass {', '.join(f'{r:.2f}' for r in ingest['cpu_ratios'])})")
        search = bench_search(tmp, args.scale, rng)
        print(f"search on {search['circuits']:,} circuits, {search['labelled_neurons']:,} labelled neurons "
              f"({search['file_mb']:.0f} MB, built in {search['build_s']:.1f} s): FTS median {search['fts_median_ms']:.2f} ms, "
              f"p95 {search['fts_p95_ms']:.2f} ms; LIKE scan median {search['like_median_ms']:.2f} ms "
              f"({search['like_over_fts']:.0f}x slower); {search['mean_hits']:.1f} hits per query")
        print(f"show a neuron with the circuits it is in: median {search['show_neuron_median_ms']:.0f} ms "
              f"({search['mean_member_of']:.0f} circuits each)")


if __name__ == "__main__":
    main()

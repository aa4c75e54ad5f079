"""Full-text search over neuron labels and notes, motif descriptions, and module code (SQLite FTS5)."""

from __future__ import annotations

import re

from circuits.errors import UsageError


def fts_query(text: str) -> str:
    """Every word must match; words are quoted, so user text can never be read as FTS5 syntax."""
    words = re.findall(r"\w+", text or "")
    if not words:
        raise UsageError(f"search text {text!r} has no words to look for.")
    return " ".join(f'"{word}"' for word in words)


_QUERIES = {
    "neuron": """
        SELECT 'neuron' AS kind, m.name || '/' || n.layer || ':' || n.channel AS id, n.model AS model,
               n.layer || ':' || n.channel AS neuron, n.label AS text, n.label_source AS source, n.notes AS notes,
               bm25(neurons_fts) AS score
        FROM neurons_fts JOIN neurons n ON n.rowid = neurons_fts.rowid JOIN models m ON m.id = n.model
        WHERE neurons_fts MATCH :q ORDER BY score, id LIMIT :limit""",
    "motif": """
        SELECT 'motif' AS kind, mo.id AS id, NULL AS model, NULL AS neuron, mo.description AS text,
               NULL AS source, NULL AS notes, bm25(motifs_fts) AS score
        FROM motifs_fts JOIN motifs mo ON mo.rowid = motifs_fts.rowid
        WHERE motifs_fts MATCH :q ORDER BY score, id LIMIT :limit""",
    "module": """
        SELECT 'module' AS kind, md.id AS id, c.model AS model, c.target AS neuron,
               snippet(modules_fts, 0, '[', ']', '…', 12) AS text, NULL AS source, NULL AS notes,
               bm25(modules_fts) AS score
        FROM modules_fts JOIN modules md ON md.rowid = modules_fts.rowid JOIN circuits c ON c.id = md.circuit
        WHERE modules_fts MATCH :q ORDER BY score, id LIMIT :limit""",
}


def search(store, text: str, limit: int = 50) -> list[dict]:
    """Neurons, motifs and modules whose text has every word of ``text``, best match first."""
    query = fts_query(text)
    results = []
    for sql in _QUERIES.values():
        results.extend(store.rows(sql, {"q": query, "limit": limit}))
    results.sort(key=lambda r: (r["score"], r["kind"], r["id"]))
    for row in results:
        row["score"] = round(row["score"], 6)
    return results[:limit]


def like_search(store, text: str, limit: int = 50) -> list[dict]:
    """The same neuron search by ``LIKE`` scans: the baseline the benchmark compares FTS against."""
    words = re.findall(r"\w+", text)
    where = " AND ".join("(coalesce(label, '') || ' ' || coalesce(notes, '')) LIKE ?" for _ in words)
    return store.rows(f"SELECT model, layer, channel, label FROM neurons WHERE {where} ORDER BY label LIMIT ?",
                      [f"%{w}%" for w in words] + [limit])  # ordered, like FTS's ranking: every row is read

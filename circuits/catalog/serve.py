"""Browse a catalog in datasette, on loopback, with canned queries for the questions people ask."""

from __future__ import annotations

import importlib.util
import os
import sys

from circuits.errors import CatalogError

CANNED_QUERIES = {
    "motifs_in_several_models": {
        "title": "Motifs found in more than one model",
        "sql": """SELECT mo.id AS motif, mo.description, count(DISTINCT i.model) AS models, count(*) AS instances,
                    group_concat(DISTINCT m.name) AS model_names
                  FROM motif_instances i JOIN motifs mo ON mo.id = i.motif JOIN models m ON m.id = i.model
                  GROUP BY mo.id HAVING count(DISTINCT i.model) > 1 ORDER BY models DESC, mo.id""",
    },
    "labelled_neurons": {
        "title": "Labelled neurons",
        "sql": """SELECT m.name AS model, n.layer || ':' || n.channel AS neuron, n.label, n.label_source, n.notes
                  FROM neurons n JOIN models m ON m.id = n.model WHERE n.label IS NOT NULL
                  ORDER BY m.name, n.layer, n.channel""",
    },
    "strongest_edges": {
        "title": "Strongest edges into a neuron",
        "sql": """SELECT e.source, e.target, e.weight, e.circuit FROM edges e JOIN circuits c ON c.id = e.circuit
                  WHERE e.target = :neuron ORDER BY abs(e.weight) DESC LIMIT 50""",
    },
    "circuits_per_model": {
        "title": "Circuits per model",
        "sql": """SELECT m.name, m.id, count(c.id) AS circuits FROM models m LEFT JOIN circuits c ON c.model = m.id
                  GROUP BY m.id ORDER BY circuits DESC, m.name""",
    },
    "faithful_modules": {
        "title": "Emitted modules by faithfulness",
        "sql": """SELECT md.id, m.name AS model, c.target, md.faithfulness FROM modules md
                  JOIN circuits c ON c.id = md.circuit JOIN models m ON m.id = c.model ORDER BY m.name, c.target""",
    },
}


def metadata(path: str) -> dict:
    name = os.path.splitext(os.path.basename(path))[0]
    return {"title": "circuits catalog", "databases": {name: {"queries": CANNED_QUERIES}}}


def command(path: str, metadata_file: str, port: int, immutable: bool = False) -> list[str]:
    """The datasette command line: always on 127.0.0.1, never on a public interface.

    Datasette reads a file it is given by SQLite URI ``mode=ro``, and so sees what extract writes meanwhile; a
    file that cannot be written (a read-only mount) is passed as ``--immutable``, which opens where ``mode=ro``
    cannot (a WAL-mode file whose folder is read-only).
    """
    if importlib.util.find_spec("datasette") is None:
        raise CatalogError("`serve` needs datasette; install it with `pip install 'datasette>=0.64,<1'`.")
    where = ["--immutable", path] if immutable else [path]
    return [sys.executable, "-m", "datasette", "serve", *where, "--host", "127.0.0.1", "--port", str(port),
            "--metadata", metadata_file]

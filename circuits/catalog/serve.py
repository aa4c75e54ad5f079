"""Browse a catalog in datasette, on loopback, with canned queries for the questions people ask.

Pictures of neurons are PNG blobs; with the ``datasette-render-images`` plugin installed datasette shows them
as images (``<img src="data:image/png;base64,...">``), and without it as its usual links to download each
blob, so ``serve`` works either way.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from circuits.catalog.pictures import kind_order
from circuits.errors import CatalogError

IMAGES_PLUGIN = "datasette-render-images"
IMAGES_PLUGIN_PIN = "datasette-render-images>=0.4,<1"
# Biggest PNG the plugin shows inline (its default is 100 KB): a 224-pixel RGB picture of noise is ~150 KB.
IMAGE_SIZE_LIMIT = 1024 * 1024

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
        "description": "Source 'user' is a person's label; an automatic label shows its concept and score.",
        "sql": """SELECT m.name AS model, n.layer || ':' || n.channel AS neuron, n.label, n.label_source AS source,
                    json_extract(n.label_evidence, '$.concept') AS concept,
                    json_extract(n.label_evidence, '$.score') AS score, n.notes
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
    "pictures_of_neurons": {
        "title": "Pictures of neurons",
        "description": "Feature visualisations and top dataset examples; leave a box empty to see all.",
        "sql": f"""SELECT m.name AS model, p.layer || ':' || p.channel AS neuron, p.kind, p.rank, p.activation,
                    p.agreement, i.png AS picture
                  FROM neuron_images p JOIN models m ON m.id = p.model JOIN images i ON i.id = p.image
                  WHERE (:model = '' OR m.name = :model OR m.id = :model) AND (:layer = '' OR p.layer = :layer)
                    AND (:neuron = '' OR p.layer || ':' || p.channel = :neuron)
                  ORDER BY m.name, p.layer, p.channel, {kind_order("p.kind")}, p.rank, p.created DESC, p.id""",
    },
    "faithful_modules": {
        "title": "Emitted modules by faithfulness",
        "sql": """SELECT md.id, m.name AS model, c.target, md.faithfulness FROM modules md
                  JOIN circuits c ON c.id = md.circuit JOIN models m ON m.id = c.model ORDER BY m.name, c.target""",
    },
}


def metadata(path: str) -> dict:
    name = os.path.splitext(os.path.basename(path))[0]
    return {"title": "circuits catalog", "databases": {name: {"queries": CANNED_QUERIES}},
            "plugins": {IMAGES_PLUGIN: {"size_limit": IMAGE_SIZE_LIMIT}}}


def missing_images_plugin() -> str | None:
    """What to say when pictures will show as download links (datasette-render-images is not installed)."""
    if importlib.util.find_spec("datasette_render_images") is not None:
        return None
    return (f"pictures of neurons show as download links: install {IMAGES_PLUGIN} to see them "
            f"(pip install '{IMAGES_PLUGIN_PIN}')")


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

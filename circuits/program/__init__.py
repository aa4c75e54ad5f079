"""Reverse-compile a whole network into a Python package, from the image to the logits, and measure it.

    program = compile_program(model, top_k=8, data=images)   # -> Program (files in memory)
    program.write("plain_cnn/")                               # one module per layer, one function per neuron
    report = verify_program("plain_cnn/", model, labelled)   # accuracy, agreement, logits R², per layer

The package imports numpy only (and the standard library). A complete program (no pruning) computes every
neuron exactly as the model does; a pruned one keeps each neuron's strongest inputs and replaces the rest
by their mean contribution on the probe images (:mod:`circuits.program.prune`). docs/program.md has it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from circuits.program.verify import verify_program

SCHEMA_VERSION = 1
HELD_OUT = "2000:10000"  # what a toy-world program is measured on by default: the zoo cards' held-out images
PROBE = "256:12345"  # what its dropped inputs' mean is taken on by default: other held-out images


def held_out(model, spec: str | None) -> str | None:
    """The images to measure a program of ``model`` on: ``spec`` when given, else 2,000 held-out images of
    the task a zoo or planted model was made for; None for any other model (it must be given its own)."""
    if spec is not None:
        return spec
    family = getattr(model, "trained_on", None)
    return f"{family}:{HELD_OUT}" if family else None


def require_held_out(model, spec: str | None) -> str:
    """:func:`held_out`, or a UsageError saying that a model from outside the toy world needs its own images."""
    from circuits.errors import UsageError

    found = held_out(model, spec)
    if found is None:
        name = getattr(model, "spec", None) or type(model).__name__
        raise UsageError(f"{name} was not made for toy-world images; pass --data with its own images (a folder, .npy "
                         "or .pt), or --data toyworld:2000 to measure on toy images anyway")  # fmt: skip
    return found


def probe(model, spec: str | None) -> str:
    """The images a pruned program's dropped inputs are averaged on: ``spec``, else 256 toy-world images of
    the model's own task; any other model must be given its own (a UsageError says so)."""
    from circuits.compile.faithfulness import probe_spec

    family = getattr(model, "trained_on", None)
    return spec if spec is not None else f"{family}:{PROBE}" if family else probe_spec(model, spec)


@dataclass
class Program:
    """A compiled program: its files (name -> bytes) and manifest, before or after it is written."""

    files: dict[str, bytes]
    manifest: dict

    def write(self, folder) -> Path:
        from circuits.program.package import write_package
        from circuits.program.report import program_md

        return write_package({**self.files, "PROGRAM.md": program_md(self.manifest).encode()}, folder)

    @property
    def lines(self) -> int:
        return self.manifest["lines"]

    @property
    def terms(self) -> int:
        return self.manifest["terms"]


def compile_program(model, top_k: int | None = None, keep_strength: float | None = None, data=None,
                    data_spec: str | None = None, dropped: str | None = None, rank: str | None = None,
                    motifs=None, inline_limit: int = 25, simplify: bool = False, tolerance: float | None = None,
                    progress=None) -> Program:  # fmt: skip
    """``model`` written as a program package.

    top_k / keep_strength: how many inputs each neuron keeps (:func:`circuits.program.prune.kept_inputs`);
    neither: all of them, and the program is exact.
    data: probe images (a tensor) the dropped inputs' mean contribution is measured on; ``data_spec`` names
    them in the package. dropped: ``"mean"`` (the default with data) or ``"zero"`` (the default without).
    rank: which inputs ``top_k`` keeps: ``"data"`` (the default with data) those whose contribution varies
    most on the images, ``"weight"`` the strongest by weight (as ``circuits extract`` ranks them).
    ``keep_strength`` always counts weight strength, strongest first.
    motifs: motif records or dicts (``circuits motifs --json``), or ``"find"`` to find them on the model
    from its weights; each neuron's role in them goes in its docstring and in PROGRAM.md.
    simplify: write each equivariant family as one function and each union's cases through one shared
    kernel wherever the motifs suggest it and the neurons it changes keep their R² on ``data`` within
    ``tolerance`` (:mod:`circuits.program.simplify`); ``motifs`` are found on the model when not given.
    """
    import circuits
    from circuits import arguments
    from circuits.errors import UsageError
    from circuits.graph import build_graph
    from circuits.program.prune import (
        DROPPED,
        RANKS,
        check_pruning,
        contribution_spread,
        dropped_means,
        kept_inputs,
    )
    from circuits.program.terms import network_terms
    from circuits.program.writer import package_files

    top_k, keep_strength = check_pruning(top_k, keep_strength)
    simplify = arguments.flag(simplify, "simplify")
    if tolerance is not None:
        from circuits.program.simplify import check_tolerance

        tolerance = check_tolerance(tolerance)
    inline_limit = arguments.integer(inline_limit, "inline_limit", minimum=0)
    dropped = dropped or ("mean" if data is not None else "zero")
    if dropped not in DROPPED:
        raise UsageError(f"unknown --dropped '{dropped}': use mean (their mean contribution on the data) or zero")
    if dropped == "mean" and data is None and (top_k or keep_strength):
        raise UsageError("--dropped mean needs probe images to take the mean on: pass --data, or --dropped zero")
    if simplify and data is None:
        raise UsageError("--simplify measures every collapse on probe images before it keeps one: pass --data")
    rank = rank or ("data" if data is not None and top_k else "weight")
    if rank not in RANKS:
        raise UsageError(f"unknown --rank '{rank}': use data (what varies most on the probe images) or weight")
    if rank == "data" and data is None and top_k:
        raise UsageError("--rank data needs probe images: pass --data, or --rank weight")
    graph = build_graph(model)
    network = network_terms(graph, progress)
    spread = (contribution_spread(graph, network, data, dropped) if rank == "data" and top_k
              else [None] * len(network))  # fmt: skip
    kept = [kept_inputs(lt, top_k, keep_strength, s, dropped == "mean") for lt, s in zip(network, spread)]
    records, forms = [], {}
    if simplify:
        from circuits.program.simplify import TOLERANCE, simplify_program

        tolerance = TOLERANCE if tolerance is None else tolerance
        network, kept, forms, records = simplify_program(graph, network, kept, data, _simplify_motifs(graph, motifs),
                                                         dropped == "mean", tolerance)  # fmt: skip
    means = dropped_means(graph, network, kept, data) if dropped == "mean" and data is not None else {}
    pruning = ("complete: every input kept" if top_k is None and keep_strength is None else
               f"top {top_k} inputs per neuron by {'spread on the data' if rank == 'data' else 'weight'}" if top_k else f"each neuron keeps {keep_strength:g} of its input strength")
    if means and (top_k or keep_strength or simplify):
        pruning += f", dropped inputs replaced by their mean contribution on {data_spec or 'the probe data'}"
    elif top_k or keep_strength:
        pruning += ", dropped inputs left out"
    if simplify:
        pruning += f"; {sum(r['kept'] for r in records)} of {len(records)} motif collapses kept (measured on the data)"
    meta = {
        "schema_version": SCHEMA_VERSION, "model": graph.spec, "weights_sha256": graph.weights_hash,
        "tool_version": circuits.__version__, "input": graph.input_layer, "input_shape": list(graph.input_shape),
        "logits": _logits_layer(graph), "top_k": top_k, "keep_strength": keep_strength,
        "rank": rank if top_k else None,
        "dropped": dropped if (top_k or keep_strength or simplify) else None, "dropped_data": data_spec if means else None,
        "pruning": pruning, "labels": dict(graph.labels),
    }  # fmt: skip
    meta["simplifications"] = [_plain(r) for r in records] if simplify else None
    meta["roles"] = _roles(graph, motifs)
    files, manifest = package_files(network, kept, means, meta, inline_limit, forms)
    return Program(files, manifest)


def _roles(graph, motifs) -> dict[str, list[str]]:
    """Each neuron's motif roles, as sentences (none without motifs)."""
    from circuits.compile.layout import motif_dicts, motif_roles

    if motifs is None:
        return {}
    if isinstance(motifs, str) and motifs == "find":
        from circuits.motifs import find

        motifs = find(graph)
    return motif_roles(motif_dicts(motifs), dict(graph.labels))


def _simplify_motifs(graph, motifs) -> list[dict]:
    """The motifs a simplification is proposed from: those given, else the equivariance motifs (invariant
    neurons included: they say how a transform maps a family's inputs) and unions found on the weights."""
    from circuits.compile.layout import motif_dicts
    from circuits.motifs import find

    if motifs is None or (isinstance(motifs, str) and motifs == "find"):
        motifs = find(graph, kind="equivariance", include_invariant=True) + find(graph, kind="union")
    return motif_dicts(motifs)


def _plain(record: dict) -> dict:
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in record.items()}


def _logits_layer(graph) -> str:
    from circuits.errors import UnsupportedOpError

    outputs = [layer for layer in graph.layers.values() if layer.is_output and layer.preact is not None]
    if not outputs:
        raise UnsupportedOpError("the model has no output layer with weights into it; a program ends at the logits")
    return outputs[-1].name


__all__ = ["Program", "compile_program", "held_out", "probe", "require_held_out", "verify_program"]

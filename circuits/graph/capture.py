"""Capture a model as an FX graph, remembering which module call produced which node.

``torch.fx.symbolic_trace`` is tried first (module names survive exactly); models it cannot trace
(data-dependent control flow) fall back to ``torch.export``, whose nodes carry ``nn_module_stack``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from circuits.errors import UnsupportedOpError, UsageError


@dataclass
class Captured:
    """A traced graph plus, per node, the modules whose forward returned it (innermost first)."""

    gm: fx.GraphModule
    module_outputs: dict[str, list[tuple[str, type]]]
    method: str  # "fx" or "export"
    leaf_calls: dict[str, tuple[str, str]] = None  # node -> (leaf module's qualified name, call key)

    def __post_init__(self):
        if self.leaf_calls is None:  # fx: a leaf module call is exactly one call_module node
            self.leaf_calls = {n.name: (n.target, n.name) for n in self.gm.graph.nodes if n.op == "call_module"}


class _RecordingTracer(fx.Tracer):
    """A tracer that records, for each non-leaf module call, which node(s) it returned."""

    def __init__(self):
        super().__init__()
        self.module_outputs: dict[str, list[tuple[str, type]]] = {}

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        qualname = self.path_of_module(m)
        if qualname and not self.is_leaf_module(m, qualname):
            for proxy in _proxies(out):
                self.module_outputs.setdefault(proxy.node.name, []).append((qualname, type(m)))
        return out


def _proxies(value):
    if isinstance(value, fx.Proxy):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _proxies(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _proxies(item)


def capture(module: nn.Module, example: torch.Tensor) -> Captured:
    """Trace ``module`` (already in eval mode, already a private copy) into an FX graph."""
    if isinstance(module, fx.GraphModule):
        outputs, leaf_calls = _outputs_from_stack(module.graph)
        return Captured(module, outputs, "export", leaf_calls)
    tracer = _RecordingTracer()
    try:
        graph = tracer.trace(module)
    except Exception as fx_error:  # FX cannot trace data-dependent Python: try torch.export
        try:
            program = torch.export.export(module, (example,), strict=False)
        except Exception as export_error:
            raise UnsupportedOpError(
                f"cannot trace {type(module).__name__}: torch.fx said '{_first_line(fx_error)}' and torch.export "
                f"said '{_first_line(export_error)}'; make forward() free of data-dependent Python control flow"
            ) from None
        gm = program.module()
        outputs, leaf_calls = _outputs_from_stack(gm.graph)
        return Captured(gm, outputs, "export", leaf_calls)
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    return Captured(gm, tracer.module_outputs, "fx")


def _outputs_from_stack(graph: fx.Graph):
    """For export graphs, from ``nn_module_stack``: which non-leaf module calls each node leaves (a user
    lies outside that call), and which leaf module call (Conv2d, ReLU, ...) each node belongs to."""
    outputs: dict[str, list[tuple[str, type]]] = {}
    leaf_calls: dict[str, tuple[str, str]] = {}
    for node in graph.nodes:
        scopes = list((node.meta.get("nn_module_stack") or {}).items())
        if scopes and _is_leaf_type(scopes[-1][1][1]):
            key, (qualname, _) = scopes[-1][0], scopes[-1][1][:2]
            leaf_calls[node.name] = (_clean_qualname(qualname), key)
            scopes = scopes[:-1]
        found = []
        for key, value in reversed(scopes):  # innermost first
            qualname, mtype = value[0], value[1]
            leaves_scope = any(
                user.op == "output" or key not in (user.meta.get("nn_module_stack") or {}) for user in node.users
            )
            if leaves_scope and qualname:
                found.append((_clean_qualname(qualname), nn.Sequential if _type_name(mtype) == "Sequential" else mtype))
        if found:
            outputs[node.name] = found
    return outputs, leaf_calls


def _type_name(mtype) -> str:
    return mtype.__name__ if isinstance(mtype, type) else str(mtype).rpartition(".")[2]


def _is_leaf_type(mtype) -> bool:
    """torch.nn's own modules (Conv2d, ReLU, BatchNorm2d) are leaves; containers and user classes are not."""
    path = f"{mtype.__module__}.{mtype.__name__}" if isinstance(mtype, type) else str(mtype)
    return path.startswith("torch.nn.modules.") and _type_name(mtype) not in {"Sequential", "ModuleList", "ModuleDict"}


def _clean_qualname(name: str) -> str:
    # export spells nested names as "L['self'].layer1[0]" in some versions, "layer1.0" in others
    for old, new in (("L['self'].", ""), ("L__self__.", ""), ("L__self___", ""), ("[", "."), ("]", "")):
        name = name.replace(old, new)
    return name.strip(".")


def shape_propagate(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Record each node's output shape in ``node.meta['shape']`` by running ``example`` through the graph."""
    shapes: dict[str, object] = {}
    returns: dict[str, str] = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            shapes[n.name] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
            returns[n.name] = _returns(result)
            return result

    try:
        with torch.no_grad():
            _Recorder(gm).run(example)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise UsageError(
            f"the model does not accept an input of shape {tuple(example.shape[1:])}: {_first_line(exc)}; "
            "pass the right --input-shape C,H,W"
        ) from None
    for node in gm.graph.nodes:
        node.meta["shape"] = shapes.get(node.name)
        node.meta["returns"] = returns.get(node.name, "other")


def _returns(result) -> str:
    """"tensor", "tensors" (a tuple of them, as sort or max(dim) return) or "other" (sizes, guards)."""
    if isinstance(result, torch.Tensor):
        return "tensor"
    if isinstance(result, (tuple, list)) and result and all(isinstance(r, torch.Tensor) for r in result):
        return "tensors"
    return "other"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

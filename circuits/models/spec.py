"""Parse a model spec string and load the model it names, safely."""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from circuits import arguments
from circuits.errors import BadSpecError, ModelLoadError, UsageError, close_matches_hint
from circuits.limits import check_size
from circuits.models.loaded import LoadedModel
from circuits.pyfiles import import_file

# Schemes whose names live in a registry inside the package: scheme -> module exposing load(name), names().
REGISTRIES = {"zoo": "circuits.zoo", "planted": "circuits.planted"}

SPEC_HELP = (
    "use zoo:NAME, planted:NAME, package.module:attr, path/to/file.py:attr, or FILE.pt2"
)


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """``"3,32,32"`` -> ``(3, 32, 32)`` (no batch dimension)."""
    if text is None or text == "":
        return None
    try:
        shape = tuple(int(part) for part in str(text).replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"bad --input-shape {text!r}: give C,H,W (e.g. 3,32,32) or F for a dense input") from None
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"bad --input-shape {text!r}: every dimension must be a positive integer")
    check_input_shape(shape)
    return shape


def check_input_shape(shape) -> None:
    """Refuse an example input too large to trace (one image of it is allocated, and more while tracing)."""
    import math

    check_size(f"an input of shape {tuple(shape)}", math.prod(shape), "MAX_INPUT_ELEMENTS", 50_000_000, "elements")


def load(
    spec: str | nn.Module | LoadedModel,
    weights: str | Path | None = None,
    input_shape: tuple[int, ...] | str | None = None,
) -> LoadedModel:
    """Load the model named by ``spec`` (see :mod:`circuits.models`), then ``weights`` if given.

    ``weights`` is a state_dict file read with ``torch.load(weights_only=True)``: a checkpoint that holds
    pickled code is refused, never executed.
    """
    if isinstance(spec, LoadedModel):
        loaded = spec
    elif isinstance(spec, nn.Module):
        loaded = LoadedModel(spec, spec=type(spec).__name__, input_shape=_shape_attr(spec))
    elif isinstance(spec, (str, Path)):
        loaded = _load_spec(str(spec))
    else:
        raise BadSpecError(f"a model spec is a string, an nn.Module or a LoadedModel, got {arguments.shown(spec)}: "
                           f"{SPEC_HELP}")  # fmt: skip
    if weights is not None:
        load_state_dict_file(loaded.module, weights)
        loaded._hash = None
    if loaded.preprocess is None:
        loaded.preprocess = _preprocess_attr(loaded.module)
    shape = None if input_shape is None else arguments.shape(input_shape)
    if shape is not None:
        check_input_shape(shape)
        loaded.input_shape = tuple(shape)
    return loaded


def _preprocess_attr(module: nn.Module) -> dict | None:
    """A module's own ``preprocess = {"mean": [...], "std": [...]}``, if it declares one."""
    value = getattr(module, "preprocess", None)
    return dict(value) if isinstance(value, dict) else None


def _shape_attr(module: nn.Module):
    shape = getattr(module, "input_shape", None)
    return tuple(shape) if shape is not None else None


def _load_spec(spec: str) -> LoadedModel:
    scheme, _, rest = spec.partition(":")
    if scheme in REGISTRIES and rest:
        registry = importlib.import_module(REGISTRIES[scheme])
        names = list(registry.names())
        if scheme == "planted" and rest not in names and Path(rest).is_file():
            return registry.load(rest)  # a spec file of the user's own
        if rest not in names:
            raise BadSpecError(
                f"unknown {scheme} model '{rest}'{close_matches_hint(rest, names)} "
                f"(`circuits {scheme} list` shows them)"
            )
        return registry.load(rest)
    if spec.endswith(".pt2"):
        return _load_exported(Path(spec))
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        module = _instantiate(_import_attr(target, attr, spec), spec)
        return LoadedModel(module, spec=spec, input_shape=_shape_attr(module))
    path = Path(spec)
    if path.suffix in {".pt", ".pth", ".ckpt", ".bin"}:
        raise BadSpecError(
            f"'{spec}' is a weights file, not a model: name the architecture and pass the file with "
            f"--weights (e.g. `circuits layers mypkg.nets:Net --weights {spec}`)"
        )
    raise BadSpecError(f"cannot read model spec '{spec}': {SPEC_HELP}")


def _import_attr(target: str, attr: str, spec: str):
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise BadSpecError(f"model file '{target}' does not exist: check the path in '{spec}'")
        try:
            module = import_file(path, "_circuits_user")
        except Exception as exc:  # the user's own file failed: report it, as one line
            raise ModelLoadError(f"importing '{target}' failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise BadSpecError(f"cannot import module '{target}' ({exc.msg}): {SPEC_HELP}") from None
        except Exception as exc:
            raise ModelLoadError(f"importing '{target}' failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise BadSpecError(f"'{target}' has no attribute '{attr}'{close_matches_hint(attr, names)}")
    return getattr(module, attr)


def _instantiate(obj, spec: str) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    if callable(obj):
        try:
            made = obj()
        except TypeError as exc:
            raise BadSpecError(f"'{spec}' must be an nn.Module or a zero-argument callable: {exc}") from None
        except Exception as exc:  # the user's own factory failed: their code, reported as one line
            raise ModelLoadError(f"the factory '{spec}' raised {type(exc).__name__}: {exc}; fix it, or pass "
                                 "the nn.Module itself") from None
        if isinstance(made, nn.Module):
            return made
        raise BadSpecError(f"'{spec}' returned {type(made).__name__}, not an nn.Module")
    raise BadSpecError(f"'{spec}' is a {type(obj).__name__}, not an nn.Module or a factory returning one")


def _load_exported(path: Path) -> LoadedModel:
    from circuits.models.pt2 import read_archive

    program, module = read_archive(path)  # checked as data first: nothing in the file is unpickled or run
    args = program.example_inputs[0] if program.example_inputs else ()
    shape = tuple(args[0].shape[1:]) if args and isinstance(args[0], torch.Tensor) else None
    return LoadedModel(module, spec=str(path), input_shape=shape)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict without executing pickled code (``weights_only=True``).

    Accepts a bare state_dict or a checkpoint dict that holds it under ``state_dict`` or ``model``.
    """
    from circuits.models.checkpoint import check_declared_sizes

    path = arguments.path(path, "--weights")
    check_declared_sizes(path)  # a regular file, whose declared tensors fit the limit: before torch allocates
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and "global" not in str(exc):
            raise ModelLoadError(f"cannot read weights file '{path}': it is corrupt or not a torch checkpoint") from None
        # name the blocked global only: torch's own line goes on to suggest allow-listing it, which would let
        # the file's code run
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        blocked = f"GLOBAL {found.group(1)}" if found else "a global torch does not allow"
        raise ModelLoadError(
            f"refused to load '{path}': it holds pickled Python objects, not just tensors ({blocked}); "
            "save a plain state_dict with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # truncated zips, garbage bytes: torch raises many types here
        raise ModelLoadError(f"cannot read weights file '{path}': it is corrupt or not a torch checkpoint") from exc
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelLoadError(f"'{path}' holds no state_dict (a dict of tensors, or one under 'state_dict'/'model')")
    return data


def load_state_dict_file(module: nn.Module, path: str | Path) -> None:
    """Load weights into ``module`` strictly, explaining key and shape mismatches in one line."""
    state = read_state_dict(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise UsageError(
            f"weights '{path}' do not fit this model: {'; '.join(parts)} — is it the right architecture?"
        )
    for key, value in state.items():
        if own[key].is_floating_point() and not value.is_floating_point():
            raise UsageError(
                f"weights '{path}' do not fit this model: '{key}' is {str(value.dtype).removeprefix('torch.')} in "
                f"the file but {str(own[key].dtype).removeprefix('torch.')} in the model; save real floating-point "
                "weights"
            )
        if own[key].shape != value.shape:
            raise UsageError(
                f"weights '{path}' do not fit this model: '{key}' has shape {tuple(value.shape)} in the file "
                f"but {tuple(own[key].shape)} in the model"
            )
    module.load_state_dict(state, strict=True)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")

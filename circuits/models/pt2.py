"""Read a ``torch.export`` archive (``FILE.pt2``) as data: check every member before torch sees it.

``torch.export.load`` is not safe on an untrusted file (torch's docs say so): it unpickles with
``weights_only=False`` tensors saved with ``use_pickle``, opaque and TorchScript constants, legacy weight
files, and the sample inputs whenever the restricted load fails; it evaluates symbolic shapes with
``sympy.sympify`` (``eval``); it loads AOTInductor shared libraries. So :func:`read_archive` reads the file
once into memory and accepts only what ``torch.export.save`` writes for a model of plain tensors:

- the archive's fixed members (format, version, byte order, ``models/model.json``, the two payload
  configs, ``data/sample_inputs/model.pt``) and ``extra/`` text files;
- weights and constants stored as raw bytes (``use_pickle`` false, named ``weight_N`` / ``tensor_N``):
  torch reads them as flat storage, no unpickling;
- sample inputs that ``torch.load(weights_only=True)`` reads (torch's restricted unpickler, as for
  ``--weights``), so torch's own ``weights_only=False`` fallback is never reached;
- in ``model.json``: operator targets under ``torch.ops.`` (or a few ``_operator``/``math`` functions),
  names that are dotted identifiers, and symbolic shapes made only of symbols, numbers, operators and
  sympy's shape functions (no attribute access, strings or calls of anything else reach ``eval``).

Anything else (a pickled object, compiled code, an unknown member, a duplicated name) is refused. torch
then reads a fresh zip rebuilt from exactly the checked bytes, so it cannot see a different member than
the one checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import zipfile
from pathlib import Path

import torch

from circuits.errors import BadSpecError, ModelLoadError
from circuits.limits import check_size
from circuits.models.checkpoint import LIMIT

FIX = "export it with torch.export.save(torch.export.export(model, (example,)), 'model.pt2')"
FIXED_MEMBERS = (
    "archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id",
    "models/model.json", "data/weights/model_weights_config.json",
    "data/constants/model_constants_config.json", "data/sample_inputs/model.pt",
)  # fmt: skip
REQUIRED = ("archive_format", "archive_version", "models/model.json", "data/weights/model_weights_config.json",
            "data/constants/model_constants_config.json")  # fmt: skip
RAW_PAYLOAD = {"data/weights/": re.compile(r"weight_\d+"), "data/constants/": re.compile(r"tensor_\d+")}
# model.json keys whose strings are free text torch stores but never evaluates or imports.
FREE_TEXT = {"metadata", "stack_trace", "nn_module_stack", "torch_fn", "source_fn_stack", "in_spec", "out_spec",
             "torch_version", "as_string", "as_strings", "verifiers", "custom", "from_node"}  # fmt: skip
DOTTED = re.compile(r"[A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
SAFE_OPERATOR = {"getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
                 "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "invert"}  # fmt: skip
SYMPY_NAMES = {"FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
               "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "TruncToFloat", "TruncToInt",
               "RoundToInt", "RoundDecimal", "ToFloat", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
               "Identity", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "floor",
               "ceiling", "sqrt", "oo", "zoo", "nan", "True", "False", "Integer", "Float", "Rational", "Symbol", "Add",
               "Mul", "Pow", "Tuple", "positive", "negative", "nonnegative", "nonpositive", "integer", "real",
               "finite", "infinite", "zero", "nonzero", "even", "odd", "rational", "extended_real"}  # fmt: skip
SYMBOL = r"[a-z]{1,4}\d+"
# a number, a name, a quoted symbol name (srepr writes Symbol('s0', positive=True)), or an operator
SYMPY_TOKEN = re.compile(rf"\s*(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|([A-Za-z_][A-Za-z0-9_]*)|'{SYMBOL}'|\*\*|//|[-+*/%(),<>=!&|~])")


def read_archive(path: Path):
    """The ``ExportedProgram`` in ``path``, or a one-line error; no code in the file runs (see the module)."""
    data = _read_bytes(path)
    members = _members(path, data)
    _check_payloads(path, members)
    _check_sample_inputs(path, members.get("data/sample_inputs/model.pt", b""))
    _check_program(path, members)
    return _torch_load(path, _rebuild(members))


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise BadSpecError(f"'{path}' is a directory, not a torch.export archive: give the .pt2 file itself")
    if path.exists() and not path.is_file():
        raise BadSpecError(f"'{path}' is not a regular file (a device or a pipe), not a torch.export archive: {FIX}")
    if not path.is_file():
        raise BadSpecError(f"exported model '{path}' does not exist: check the path")
    check_size(f"exported model '{path}'", path.stat().st_size, *LIMIT)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadSpecError(f"cannot read '{path}': {exc.strerror}; check its permissions") from None
    if not data:
        raise BadSpecError(f"'{path}' is empty, not a torch.export archive: {FIX}")
    return data


def _members(path: Path, data: bytes) -> dict[str, bytes]:
    """Every member, keyed by its name under the archive's one top folder; checked against the layout."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            check_size(f"exported model '{path}' unpacked", sum(info.file_size for info in infos), *LIMIT)
            names = [info.filename for info in infos]
            members = {name: archive.read(name) for name in names}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise BadSpecError(f"'{path}' is not a readable torch.export archive ({exc}); {FIX}") from None
    tops = {name.partition("/")[0] for name in names}
    if len(names) != len(set(names)) or len(tops) != 1 or any("/" not in n for n in names):
        raise BadSpecError(f"'{path}' is not a torch.export archive (its zip layout is not one); {FIX}")
    top = tops.pop() + "/"
    members = {name[len(top):]: members[name] for name in names if not name.endswith("/")}
    missing = [name for name in REQUIRED if name not in members]
    if missing:
        raise BadSpecError(f"'{path}' is not a torch.export archive (no {missing[0]}); {FIX}")
    if members["archive_format"] != b"pt2" or members["archive_version"] != b"0":
        raise BadSpecError(f"'{path}' is a torch.export archive of a format this torch cannot read; re-export it")
    return members


def _refuse(path: Path, what: str):
    raise ModelLoadError(f"refused to load '{path}': {what}; only raw tensors and a graph of torch ops are read "
                         "from a .pt2, so nothing in it can run code: re-export the model with plain tensors")  # fmt: skip


def _json(path: Path, members: dict[str, bytes], name: str):
    try:
        return json.loads(members[name])
    except (ValueError, UnicodeDecodeError):
        raise BadSpecError(f"'{path}' is a damaged torch.export archive ({name} is not JSON); {FIX}") from None


def _check_payloads(path: Path, members: dict[str, bytes]) -> None:
    """Weights and constants must be raw tensor bytes; every other member must be one the layout names."""
    allowed = set(FIXED_MEMBERS)
    for folder, pattern in RAW_PAYLOAD.items():
        config_name = f"{folder}model_{'weights' if 'weights' in folder else 'constants'}_config.json"
        config = _json(path, members, config_name)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise BadSpecError(f"'{path}' is a damaged torch.export archive ({config_name}); {FIX}")
        for fqn, meta in entries.items():
            file = meta.get("path_name") if isinstance(meta, dict) else None
            if not isinstance(file, str) or meta.get("use_pickle") is not False or not pattern.fullmatch(file):
                _refuse(path, f"'{fqn}' is stored as a pickled object ({file})")
            allowed.add(folder + file)
    for name in members:
        if name not in allowed and not (name.startswith("extra/") and name != "extra/"):
            if name.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")):
                _refuse(path, f"it holds compiled code ({name})")
            _refuse(path, f"it holds '{name}', which is not part of a plain exported program")


def _check_sample_inputs(path: Path, blob: bytes) -> None:
    if not blob:
        return
    try:
        sample = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception:  # the restricted unpickler refused a global, or the bytes are garbage
        _refuse(path, "its example inputs hold pickled Python objects, not just tensors")
    if not isinstance(sample, (tuple, dict)):
        raise BadSpecError(f"'{path}' is a damaged torch.export archive (example inputs); {FIX}")


def _check_program(path: Path, members: dict[str, bytes]) -> None:
    program = _json(path, members, "models/model.json")
    for key, value in _strings(program):
        if key in FREE_TEXT:
            continue
        ok = _safe_target(value) if key == "target" else _safe_sympy(value) if key == "expr_str" else (
            DOTTED.fullmatch(value) is not None)  # fmt: skip
        if not ok:
            _refuse(path, f"its graph holds {key} {value[:60]!r}")


def _strings(node, key=None):
    """(key, string) for every string value and dict key, skipping free-text subtrees."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield "key", str(k)
            if k not in FREE_TEXT:
                yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def _safe_target(target: str) -> bool:
    parts = target.split(".")
    if "__" in target or not all(p.isidentifier() for p in parts):
        return False
    if parts[:2] == ["torch", "ops"] and len(parts) >= 4:
        return True
    return len(parts) == 2 and ((parts[0] == "_operator" and parts[1] in SAFE_OPERATOR) or parts[0] == "math")


def _safe_sympy(expr: str) -> bool:
    """Only numbers, operators, symbols (``s0``) and sympy's shape functions: nothing for eval to misuse."""
    pos = 0
    while pos < len(expr.rstrip()):
        match = SYMPY_TOKEN.match(expr, pos)
        if not match:
            return False
        name = match.group(1)
        if name is not None and name not in SYMPY_NAMES and not re.fullmatch(SYMBOL, name):
            return False
        pos = match.end()
    return True


def _rebuild(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, blob in members.items():
            archive.writestr(f"archive/{name}", blob)
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet_torch():
    """torch.export.load logs its own tracebacks as warnings; the one-line error below says it all."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _torch_load(path: Path, archive: bytes):
    try:
        with _quiet_torch():
            program = torch.export.load(io.BytesIO(archive))
            module = program.module()
    except Exception as exc:  # checked, yet torch cannot deserialise it: a damaged or foreign graph
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BadSpecError(f"'{path}' is a damaged torch.export archive ({reason}); {FIX}") from None
    return program, module

"""One error family for the whole library.

The library raises these with one sentence that names the problem and the fix; only the CLI turns them into
exit codes (2 for usage errors, 1 for failures), so notebooks get ordinary exceptions.
"""


class CircuitsError(Exception):
    """Base class: something the user can fix. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(CircuitsError):
    """The request itself is wrong (bad spec, unknown name, out-of-range channel): exit code 2."""

    exit_code = 2


class BadSpecError(UsageError):
    """A model, data or planted spec that cannot be parsed or resolved."""


class UnknownNeuronError(UsageError):
    """A layer name or channel that the model does not have."""


class ModelLoadError(CircuitsError):
    """A model or checkpoint that exists but cannot be loaded safely."""


class UnsupportedOpError(CircuitsError):
    """An operation the neuron-graph IR does not understand (see CONTRIBUTING: adding an op)."""


class DataError(CircuitsError):
    """Probe data that cannot be read or has the wrong shape."""


class CatalogError(CircuitsError):
    """A catalog file that is malformed, foreign, or from a newer version."""


class CatalogReadOnlyError(CatalogError):
    """A write refused: the catalog is open read-only, or its file (or folder) cannot be written: exit code 2."""

    exit_code = 2


def close_matches_hint(name: str, candidates) -> str:
    """`; did you mean 'a' or 'b'?` — the git/click habit of suggesting near names."""
    import difflib

    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [c for c in candidates if isinstance(c, str)], n=3, cutoff=0.5)
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    joined = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"; did you mean {joined}?"

"""Options and helpers shared by commands: the model spec, the device, probe normalisation, JSON printing."""

from __future__ import annotations

import functools

import click


def model_options(func):
    """MODEL argument plus --weights and --input-shape, as every model command takes them."""

    @click.argument("model", metavar="MODEL")
    @click.option("--weights", type=click.Path(dir_okay=False),
                  help="state_dict file, read as data (weights_only=True): no code in it runs.")  # fmt: skip
    @click.option("--input-shape", metavar="C,H,W", help="Example input shape, if the model does not say.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


DEVICE_HELP = "Where the model runs on probe data: cpu, cuda or cuda:N (results agree up to float rounding)."


def device_option(func=None, *, help: str = DEVICE_HELP):
    """--device, as every command that runs a model on data takes it (checked before any work);
    ``@device_option(help=...)`` where a command's results differ more on a GPU."""
    if func is None:
        return functools.partial(device_option, help=help)

    def check(_ctx, _param, value):
        from circuits.graph.run import resolve_device

        resolve_device(value)  # a usage error (exit 2) naming the fix, e.g. no CUDA device here
        return value

    @click.option("--device", default="cpu", show_default=True, metavar="DEVICE", callback=check, help=help)
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def normalize_option(func):
    """--normalize, as every command that feeds probe images to a model takes it (checked before any work);
    pass the value on to :func:`circuits.data.model_data` (docs/data.md)."""

    def check(_ctx, _param, value):
        if value is not None:
            from circuits.data.normalize import parse_normalize

            parse_normalize(value, what="--normalize")  # a usage error (exit 2) naming the fix
        return value

    @click.option("--normalize", metavar="MEAN/STD", callback=check,
                  help="Map probe pixels in [0, 1] to (x - MEAN) / STD per input channel before the model sees "
                       "them: 0.5/0.5 (every channel), 0.485,0.456,0.406/0.229,0.224,0.225 (one per channel), "
                       "imagenet, or none. Default: the model's own preprocess, if it declares one; else none.")  # fmt: skip
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def load_model(model: str, weights: str | None, input_shape: str | None):
    from circuits.models import load

    return load(model, weights=weights, input_shape=input_shape)


def add_loaded_model(catalog, loaded) -> str:
    """Record a loaded model in ``catalog`` by its weights hash, with its architecture and parameter count."""
    return catalog.add_model(loaded.weights_hash, loaded.spec, architecture=type(loaded.module).__name__,
                             spec=loaded.spec, parameters=sum(p.numel() for p in loaded.module.parameters()))


def echo_json(payload: dict, arguments: dict, weights_sha256: str | None = None) -> None:
    from circuits.provenance import dumps, envelope

    click.echo(dumps(envelope(payload, arguments, weights_sha256)))


def check_writable(path: str | None, option: str, suffixes: tuple[str, ...] = (), keep: str | None = None) -> None:
    """Fail before any work when an output file cannot be written: its folder is missing or read-only, its
    name does not end in one of ``suffixes``, or it is the file ``keep`` (an input the command reads)."""
    if path is None:
        return
    import os

    from circuits.errors import UsageError

    if suffixes and not path.lower().endswith(suffixes):
        raise UsageError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    if keep and os.path.exists(path) and os.path.exists(keep) and os.path.samefile(path, keep):
        raise UsageError(f"{option} {path}: that is the file being read; pick another path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: folder '{folder}' does not exist; create it or pick another path")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: folder '{folder}' is not writable; pick another path")

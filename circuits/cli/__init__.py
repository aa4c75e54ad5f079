"""The ``circuits`` command: a thin skin over the library.

Each command lives in its own module and is imported only when run, so ``circuits --help`` and the catalog
commands start without importing torch. Library errors become one-line messages with exit code 2 (usage)
or 1 (failure); set ``CIRCUITS_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from circuits import __version__

# command name -> "module:attribute"; add a command by adding a line here.
COMMANDS = {
    "layers": "circuits.cli.layers:layers",
    "extract": "circuits.cli.extract:extract",
    "verify": "circuits.cli.verify:verify",
    "compile": "circuits.cli.program:compile_command",
    "lesion": "circuits.cli.lesion:lesion",
    "motifs": "circuits.cli.motifs:motifs",
    "pictures": "circuits.cli.pictures:pictures",
    "universality": "circuits.cli.motifs:universality",
    "diff": "circuits.cli.compare:diff",
    "audit": "circuits.cli.audit:audit",
    "label": "circuits.cli.label:label",
    "find": "circuits.cli.label:find",
    "planted": "circuits.cli.planted:planted",
    "zoo": "circuits.cli.zoo:zoo",
    "catalog": "circuits.cli.catalog:catalog",
    "scan": "circuits.cli.scan:scan",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; library errors become clean exits."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *(n for n in self.lazy if self._available(n))})

    def get_command(self, ctx, name):
        if name in self.lazy:
            try:
                return self._load(name)
            except ModuleNotFoundError:
                return None
        return super().get_command(ctx, name)

    def _available(self, name):
        module = self.lazy[name].partition(":")[0]
        return importlib.util.find_spec(module) is not None

    def _load(self, name):
        module, _, attr = self.lazy[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        from circuits.errors import CircuitsError

        try:
            return super().invoke(ctx)
        except CircuitsError as exc:
            if os.environ.get("CIRCUITS_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # `circuits ... | head`: the reader left; stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # a bug, not bad input: say so in one line, keep the traceback on demand
            if os.environ.get("CIRCUITS_DEBUG"):
                raise
            known = _environmental(exc)
            if known:
                click.echo(f"Error: {known}", err=True)
                sys.exit(1)
            click.echo(
                f"Error: internal error {type(exc).__name__}: {exc} (rerun with CIRCUITS_DEBUG=1 for the "
                "traceback, and please report it)",
                err=True,
            )
            sys.exit(1)


def _environmental(exc: Exception) -> str | None:
    """A failure of the machine rather than of the code (a full disk, a denied file, no memory), as a sentence."""
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "allocate" in str(exc)):
        return "out of memory: ask for less (fewer images, a smaller input or layer) or use a larger machine"
    if getattr(exc, "sqlite_errorname", None) == "SQLITE_FULL":  # the catalog says which file (storage_error)
        return "the disk is full (SQLite: database or disk is full): free some space and run the command again"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc} for '{exc.filename}': check the path, its permissions and the free space"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{exc.strerror or exc}: check the paths given, their permissions and the free space"
    return None


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="circuits")
def main():
    """Read a trained network like a circuit board.

    Trace which neurons feed which, extract a neuron's circuit, find motifs, emit the circuit as Python
    code with measured faithfulness, and record it all in a shared catalog.

    \b
    Models are named by a spec:
      zoo:NAME                 shipped toy-world models   (circuits zoo list)
      planted:NAME             networks with known circuits (circuits planted list)
      package.module:attr      an nn.Module or zero-argument factory
      path/to/file.py:attr     the same, from a file
      FILE.pt2                 a torch.export archive
    A FILE.pt2 and --weights are read as data: no code in them runs (pickled
    objects are refused). file.py:attr and package.module:attr run that
    Python code, as importing it would: name only code you trust.
    Neurons are LAYER:CHANNEL, with LAYER as listed by `circuits layers`.

    \b
    Start here:
      circuits layers zoo:plain-cnn
      circuits extract zoo:plain-cnn --neuron conv3:0
    """

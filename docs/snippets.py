"""Executed docs: the README's console blocks are the commands' real output, written by cog.

    cog -r -I docs README.md        # rewrite the blocks after a change of output
    cog --check -I docs README.md   # what the test suite runs: fails if any block has drifted

Each block runs its command in this process through click's test runner (the same code the installed
``circuits`` script runs) and keeps stdout only: progress bars go to stderr.
"""

from __future__ import annotations

import shlex


def console(command: str) -> str:
    """A ```console block: ``$ command`` and what it prints."""
    from click.testing import CliRunner

    from circuits.cli import main

    argv = shlex.split(command)
    assert argv[0] == "circuits", command
    result = CliRunner().invoke(main, argv[1:], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"`{command}` exited {result.exit_code}: {result.output}")
    return f"```console\n$ {command}\n{result.stdout.rstrip()}\n```\n"

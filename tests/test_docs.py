"""Docs that execute: the README's console blocks are checked against the commands (cog), and the
docstring examples of the public modules run as doctests."""

import doctest
import importlib
import shutil
from pathlib import Path

import pytest
from cogapp import Cog

ROOT = Path(__file__).resolve().parents[1]
DOCTESTED = ["circuits", "circuits.circuit", "circuits.catalog", "circuits.data.spec", "circuits.planted.build",
             "circuits.motifs", "circuits.motifs.union", "circuits.motifs.equivariance", "circuits.formatting"]


def _cog_check(readme: Path) -> int:
    return Cog().main(["cog", "--check", "-I", str(ROOT / "docs"), str(readme)])


def test_readme_console_blocks_are_what_the_commands_print():
    assert _cog_check(ROOT / "README.md") == 0, "README output drifted: run `cog -r -I docs README.md`"


def test_a_drifted_console_block_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    text = readme.read_text()
    assert "conv3  activation  32" in text
    readme.write_text(text.replace("conv3  activation  32", "conv3  activation  33", 1))
    assert _cog_check(readme) != 0


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0 or name == "circuits.formatting"

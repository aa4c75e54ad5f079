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
             "circuits.motifs", "circuits.motifs.union", "circuits.motifs.families", "circuits.formatting"]


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


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    start = text.index("## From Python")
    block = text[text.index("```python\n", start) + len("```python\n"):text.index("```\n", text.index("```python\n", start) + 10)]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["compiled"].report["r2"] > 0.5 and (tmp_path / "conv3_7.py").is_file()
    assert namespace["same"].to_json() == namespace["circuit"].to_json()
    assert namespace["ids"]["module"] is not None
    assert (tmp_path / "plain_cnn" / "PROGRAM.md").is_file()

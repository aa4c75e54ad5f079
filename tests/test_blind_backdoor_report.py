"""The held-out blind-audit benchmark's report: the issue's bar is counted per family and per seed set."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from blind_backdoor import main, report  # noqa: E402


def _row(family, seed, named, responding, responders=5):
    return {"family": family, "seed": seed, "status": "played", "named": named, "responding@3": responding,
            "responders": responders}  # fmt: skip


def _results(rows):
    return {"rounds": rows, "run": {"command": "x", "date": "2026-12-06", "rounds": len(rows), "wall_seconds": 60,
                                    "jobs": 1, "torch": "2.13.0", "git": "0123456789abcdef"}}  # fmt: skip


def test_a_family_meets_the_bar_on_two_seeds_named_with_two_responders():
    rows = [_row("plain-cnn", 0, True, 2), _row("plain-cnn", 1, True, 3), _row("plain-cnn", 2, False, 3),
            _row("resnet-cnn", 0, True, 1, responders=1), _row("resnet-cnn", 1, False, 3), _row("resnet-cnn", 2, True, 2),
            _row("curve-cnn", 0, True, 2, responders=2), _row("curve-cnn", 1, True, 1, responders=1),
            _row("curve-cnn", 2, True, 0, responders=1), _row("plain-cnn", 6, True, 1)]  # fmt: skip
    text = report(_results(rows))
    chosen = text.split("## Seeds 0-2")[1].split("## ")[0]
    assert "| plain-cnn | **yes / 2 (5)** | **yes / 3 (5)** | no / 3 (5) | 2 of 3 | yes | yes |" in chosen
    assert "| resnet-cnn | yes / 1 (1) | no / 3 (5) | **yes / 2 (5)** | 1 of 3 | no | yes |" in chosen
    # one curve-cnn plant has 2 responders: no ranking could have met the bar on 2 of its 3 seeds
    assert "| curve-cnn | **yes / 2 (2)** | yes / 1 (1) | yes / 0 (1) | 1 of 3 | no | no |" in chosen
    assert ("Named 7 of 9; 2 of the top 3 respond in 6 of 9; the bar is met by 1 of 6 families, and any ranking "
            "could meet it in 2.") in chosen
    assert "In 3 of 9 fewer than 2 neurons respond at all." in chosen
    unseen = text.split("## Seeds 6-8")[1]
    assert "| plain-cnn | yes / 1 (5) | - | - | 0 of 3 | no | no |" in unseen
    assert "## Seeds 3-5" not in text  # a set with no rounds is left out


def test_report_only_rewrites_the_markdown_and_refuses_a_missing_json(tmp_path, capsys):
    source, out = tmp_path / "r.json", tmp_path / "r.md"
    source.write_text(json.dumps(_results([_row("curve-cnn", 3, True, 0, responders=0)])))
    assert main(["--report-only", "--json", str(source), "--out", str(out)]) == 0
    assert "| curve-cnn | yes / 0 (0) | - | - | 0 of 3 | no | no |" in out.read_text()
    with pytest.raises(SystemExit) as exited:
        main(["--report-only", "--json", str(tmp_path / "missing.json"), "--out", str(out)])
    assert exited.value.code == 2
    assert "does not exist: run the sweep first" in capsys.readouterr().err

"""`funcdiff parity`: tables, JSON, exit codes, golden regeneration (local cases stand in for
the catalog here; the full catalog is run by tests/test_parity_suite.py)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from _parity_local import bad_cases, good_cases

from funcdiff._cli import main
from funcdiff.parity import _golden, _suite


@pytest.fixture
def local_catalog(monkeypatch, tmp_path):
    cases = good_cases() + bad_cases()
    monkeypatch.setattr(_suite, "_load_catalog", lambda: cases)
    monkeypatch.setattr(_golden, "GOLDEN_PATH", tmp_path / "golden.json")
    return cases


def test_all_agree_exits_0_with_a_summary_table(local_catalog, capsys):
    assert main(["parity", "--case", "elementwise/*"]) == 0
    out = capsys.readouterr().out
    assert "parity catalog OK against torch" in out
    for header in ("cases", "passed", "expected divergences", "failed", "errors"):
        assert header in out
    assert "failures" not in out


def test_registered_divergence_is_not_a_failure(local_catalog, capsys):
    assert main(["parity", "--case", "kink/*", "--dtype", "float64"]) == 0
    assert "float64" in capsys.readouterr().out


def test_failures_and_errors_exit_1_with_their_worst_row(local_catalog, capsys):
    assert main(["parity", "--dtype", "float32"]) == 1
    out = capsys.readouterr().out
    assert "parity catalog FAILED" in out
    assert (
        "nn/gelu_wrong" in out and "broken/raises" in out and "RuntimeError: twin exploded" in out
    )
    assert "float64" not in out.split("failures")[1]


def test_json_is_one_object(local_catalog, capsys):
    assert main(["parity", "--json", "--case", "gelu"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["cases"] == 2
    assert data["counts"] == {"passed": 0, "expected_divergence": 0, "failed": 2, "error": 0}
    worst = data["outcomes"][0]["worst"]
    assert worst["pass"] is False and worst["path"].startswith(("out", "args"))


def test_regenerate_then_replay_the_golden_file(local_catalog, capsys, tmp_path):
    assert main(["parity", "--regenerate", "--case", "reduction/*"]) == 0
    assert "wrote 2 golden entries" in capsys.readouterr().out
    assert (tmp_path / "golden.json").exists()
    assert main(["parity", "--reference", "golden", "--case", "reduction/*"]) == 0
    assert "against golden file (torch" in capsys.readouterr().out
    # a case with no entry is an error, not a crash
    assert main(["parity", "--reference", "golden", "--case", "exp"]) == 1


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["parity", "--case", "no/such/*"], 2, "No catalog case matches"),
        (["parity", "--reference", "golden"], 1, "No golden reference file"),
    ],
)
def test_bad_usage_is_one_line_on_stderr(local_catalog, capsys, argv, code, message):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_dtype_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["parity", "--dtype", "float16"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

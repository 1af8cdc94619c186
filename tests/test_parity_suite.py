"""run_catalog: outcomes are classified, a raising twin does not stop the run, golden files
replay PyTorch without it, and (once the catalog is there) the whole catalog runs green."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _parity_local import bad_cases, good_cases

from funcdiff.parity import (
    GOLDEN_PATH,
    GoldenError,
    regenerate_golden,
    run_catalog,
    torch_available,
)
from funcdiff.parity._suite import case_args, select_cases

# Live PyTorch when it is installed, the golden file otherwise; the test ids say which.
REFERENCE = "torch" if torch_available() else "golden"


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cases(torch):
    return good_cases() + bad_cases()


@pytest.fixture(scope="module")
def report(cases):
    events = []
    rep = run_catalog(cases, progress=lambda o, i, n: events.append((o.name, o.dtype, i, n)))
    return rep, events


def test_outcomes_are_classified(report):
    rep, _ = report
    status = {(o.name, o.dtype): o.status for o in rep.outcomes}
    for dtype in ("float32", "float64"):
        assert status["elementwise/exp", dtype] == "passed"
        assert status["reduction/var", dtype] == "passed"
        assert status["composition/mlp", dtype] == "passed"
        assert status["kink/abs", dtype] == "expected_divergence"
        assert status["nn/gelu_wrong", dtype] == "failed"
        assert status["broken/raises", dtype] == "error"
    assert not rep.ok
    assert rep.count("passed") == 6 and rep.count("expected_divergence") == 2
    assert rep.reference.startswith("torch ")


def test_failures_keep_their_worst_row_and_errors_their_exception(report):
    rep, _ = report
    gelu = next(o for o in rep.outcomes if o.name == "nn/gelu_wrong")
    assert gelu.worst is not None and not gelu.worst.passed
    assert gelu.worst.excess == max(r.excess for r in gelu.result.failures)
    abs_ = next(o for o in rep.outcomes if o.name == "kink/abs")
    assert abs_.divergence == "abs_at_zero"
    assert abs_.worst.quantity == "grad" and (abs_.worst.jax_value, abs_.worst.torch_value) == (
        1.0,
        0.0,
    )
    boom = next(o for o in rep.outcomes if o.name == "broken/raises")
    assert boom.result is None and boom.error == "RuntimeError: twin exploded"
    text = str(rep)
    assert "broken/raises" in text and "twin exploded" in text and "nn/gelu_wrong" in text
    assert "expected divergences" in text


def test_progress_hook_sees_every_case_in_order(report, cases):
    rep, events = report
    n = 2 * len(cases)
    assert [(e[2], e[3]) for e in events] == [(i, n) for i in range(1, n + 1)]
    assert [e[:2] for e in events] == [(o.name, o.dtype) for o in rep.outcomes]


def test_all_good_cases_make_an_ok_report():
    rep = run_catalog(good_cases(), dtypes=("float64",))
    assert rep.ok and rep.dtypes == ("float64",) and len(rep.outcomes) == 3
    assert json.loads(json.dumps(rep.to_dict()))["counts"]["passed"] == 3


def test_case_inputs_are_deterministic_and_the_same_draws_in_both_dtypes(cases):
    a32, a64 = case_args(cases[0], "float32"), case_args(cases[0], "float64")
    assert a32[0].dtype == np.float32 and a64[0].dtype == np.float64
    np.testing.assert_allclose(a32[0], a64[0], rtol=1e-6)
    np.testing.assert_array_equal(case_args(cases[0], "float64")[0], a64[0])


def test_pattern_selects_by_glob_or_substring(cases):
    assert [c.name for c in select_cases(cases, "reduction/*")] == ["reduction/var"]
    assert {c.name for c in select_cases(cases, "gelu")} == {"nn/gelu_wrong"}
    with pytest.raises(ValueError, match="No catalog case matches"):
        run_catalog(cases, pattern="nothing/*")
    with pytest.raises(ValueError, match="dtypes"):
        run_catalog(cases, dtypes=("float16",))


def test_golden_file_replays_pytorch(tmp_path, cases, torch):
    path = tmp_path / "golden.json"
    written, live = regenerate_golden(cases, path=path)
    assert written == path
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["torch_version"] == torch.__version__
    assert len(data["entries"]) == 2 * len(cases)
    replay = run_catalog(cases, reference="golden", golden_path=path)
    assert replay.reference == f"golden file (torch {torch.__version__})"
    assert [o.status for o in replay.outcomes] == [o.status for o in live.outcomes]
    for a, b in zip(live.outcomes, replay.outcomes, strict=True):
        if a.result is not None:
            assert [r.max_abs_error for r in a.result.rows] == [
                r.max_abs_error for r in b.result.rows
            ]


def test_golden_entries_know_when_they_are_stale_or_missing(tmp_path, cases):
    path = tmp_path / "golden.json"
    regenerate_golden(cases[:1], dtypes=("float32",), path=path)
    data = json.loads(path.read_text())
    (entry,) = data["entries"].values()
    entry["inputs"] = "0" * 16
    path.write_text(json.dumps(data))
    rep = run_catalog(cases[:2], dtypes=("float32",), reference="golden", golden_path=path)
    assert [o.status for o in rep.outcomes] == ["error", "error"]
    assert "stale" in rep.outcomes[0].error and "no golden entry" in rep.outcomes[1].error
    with pytest.raises(GoldenError, match="regenerate"):
        run_catalog(cases, reference="golden", golden_path=tmp_path / "missing.json")


def test_a_planted_wrong_golden_value_fails_the_case(tmp_path, cases):
    path = tmp_path / "golden.json"
    regenerate_golden(cases[:1], dtypes=("float64",), path=path)
    data = json.loads(path.read_text())
    (entry,) = data["entries"].values()
    entry["outputs"][0][1]["data"][2] += 1e-6
    path.write_text(json.dumps(data))
    rep = run_catalog(cases[:1], dtypes=("float64",), reference="golden", golden_path=path)
    (o,) = rep.outcomes
    assert o.status == "failed" and o.worst.path == "out" and o.worst.worst_index == (2,)


@pytest.mark.parametrize("reference", [REFERENCE])
def test_full_catalog_in_both_dtypes(reference):
    """The reference catalog (issue 5): live PyTorch when installed, else the golden file."""
    pytest.importorskip("funcdiff.parity._catalog")
    if reference == "golden" and not GOLDEN_PATH.exists():
        pytest.skip("PyTorch is not installed and there is no golden file")
    rep = run_catalog(reference=reference)
    print(f"catalog checked against {rep.reference}")
    assert rep.reference.startswith("torch" if reference == "torch" else "golden")
    assert len(rep.outcomes) >= 160
    assert rep.ok, str(rep)


def test_shipped_golden_file_is_current_and_replays():
    """The golden file in the package matches today's catalog inputs (no stale entries)."""
    from funcdiff.parity import GOLDEN_PATH

    assert GOLDEN_PATH.exists(), "run `funcdiff parity --regenerate`"
    report = run_catalog(pattern="tutorial/*", reference="golden")
    assert report.reference.startswith("golden file (torch ")
    assert report.ok, str(report)
    assert all(o.status in ("passed", "expected_divergence") for o in report.outcomes)
    assert len(report.outcomes) >= 10

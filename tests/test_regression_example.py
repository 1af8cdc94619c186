"""The regression example runs and prints what its header says."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "regression_tutorial.py"


def test_regression_example_runs(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "intercept  1.792753" in out and "coef       0.978145" in out
    assert "least squares: intercept 1.792753, coef 0.978145" in out
    assert "bootstrap (1000 resamples, one call): coef 95% interval [0.7" in out

"""The shared table renderer."""

from __future__ import annotations

import numpy as np
import pytest

from funcdiff._report import fmt, table


def test_table_aligns_columns():
    out = table(["name", "value"], [["a", 1.5], ["longer", 0.25]], title="T")
    lines = out.splitlines()
    assert lines[0] == "T"
    assert lines[1] == "name    value"
    assert lines[3] == "a       1.5"
    assert lines[4] == "longer  0.25"


def test_table_refuses_ragged_rows():
    with pytest.raises(ValueError, match=r"Expected 2 cells in row 0, got 1"):
        table(["a", "b"], [[1]])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.36327761, "1.3633"),
        (0.19118989, "0.1912"),
        (2.0, "2"),
        (1e-7, "1.000e-07"),
        (float("nan"), "nan"),
        (True, "yes"),
        (False, "NO"),
        (None, "-"),
        (np.float32(0.5), "0.5"),
        (np.array([1.0, 2.0]), "[1, 2]"),
        ((1, 2.5), "(1, 2.5)"),
    ],
)
def test_fmt(value, text):
    assert fmt(value) == text

"""The public face: every advertised name exists, and importing funcdiff never imports torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import funcdiff

CONTRACT = {
    "funcdiff": {
        "seed",
        "scoped",
        "fd_grad",
        "fd_jvp",
        "fd_jacobian",
        "fd_hvp",
        "check_grad",
        "GradCheckResult",
    },
    "funcdiff.seed": {"f", "g", "composite", "manual_grad", "regression_data"},
    "funcdiff.regression": {"fit", "ols", "bootstrap", "confidence_interval", "FitResult"},
    "funcdiff.parity": {
        "to_torch",
        "from_torch",
        "compare",
        "ParityResult",
        "catalog",
        "optax_like",
        "compare_optimizers",
        "compare_model",
        "tap",
        "ModelParityResult",
    },
}


@pytest.mark.parametrize("module", sorted(CONTRACT))
def test_contract_names_are_public(module):
    mod = importlib.import_module(module)
    missing = CONTRACT[module] - set(mod.__all__)
    assert not missing, f"{module} lacks {sorted(missing)}"


@pytest.mark.parametrize("module", sorted(CONTRACT))
def test_all_names_resolve(module):
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_version_matches_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert funcdiff.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]


def test_importing_funcdiff_does_not_import_torch():
    code = (
        "import sys, funcdiff, funcdiff.regression, funcdiff.parity, funcdiff._cli;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

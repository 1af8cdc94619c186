"""PyTorch parity: JAX functions and optax optimizers checked against their PyTorch twins.

Importing this package does not import torch; functions that need it import it on first use
and raise ``ImportError`` with ``pip install 'funcdiff[torch]'`` when it is missing.
"""

from __future__ import annotations

from funcdiff.parity._compare import DEFAULT_TOLERANCES, ParityResult, ParityRow, compare
from funcdiff.parity._convert import from_torch, to_torch
from funcdiff.parity._golden import GOLDEN_PATH, GoldenError
from funcdiff.parity._suite import CaseOutcome, CatalogReport, regenerate_golden, run_catalog
from funcdiff.parity._torch import require_torch, torch_available

__all__ = [
    "DEFAULT_TOLERANCES",
    "GOLDEN_PATH",
    "CaseOutcome",
    "CatalogReport",
    "GoldenError",
    "ParityResult",
    "ParityRow",
    "compare",
    "from_torch",
    "regenerate_golden",
    "require_torch",
    "run_catalog",
    "to_torch",
    "torch_available",
]

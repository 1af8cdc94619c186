"""PyTorch parity: JAX functions and optax optimizers checked against their PyTorch twins.

Importing this package does not import torch; functions that need it import it on first use
and raise ``ImportError`` with ``pip install 'funcdiff[torch]'`` when it is missing.
"""

from __future__ import annotations

from funcdiff.parity._optim import (
    OptimizerParityResult,
    compare_optimizers,
    optax_like,
)
from funcdiff.parity._torch import require_torch, torch_available

__all__ = [
    "OptimizerParityResult",
    "compare_optimizers",
    "optax_like",
    "require_torch",
    "torch_available",
]

"""funcdiff: functional automatic differentiation with JAX.

Pure functions differentiated with ``jax.grad`` and compiled with ``jit``; finite differences
and gradient checks that are vectorised and honest about their error; optax training loops in
one jitted ``lax.scan``; and a PyTorch parity suite (``funcdiff.parity``, torch optional).
"""

from __future__ import annotations

from funcdiff import seed
from funcdiff._check import GradCheckResult, check_grad
from funcdiff._config import DeviceNotFoundError, resolve_device, scoped, x64_enabled
from funcdiff._consistency import ConsistencyResult, check_consistency
from funcdiff._fd import fd_grad, fd_hvp, fd_jacobian, fd_jvp
from funcdiff._taylor import TaylorResult, taylor_test
from funcdiff._validation import UserFunctionError

__version__ = "0.1.0"

__all__ = [
    "ConsistencyResult",
    "DeviceNotFoundError",
    "GradCheckResult",
    "TaylorResult",
    "UserFunctionError",
    "__version__",
    "check_consistency",
    "check_grad",
    "fd_grad",
    "fd_hvp",
    "fd_jacobian",
    "fd_jvp",
    "resolve_device",
    "scoped",
    "seed",
    "taylor_test",
    "x64_enabled",
]

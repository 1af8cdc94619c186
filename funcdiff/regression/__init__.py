"""Linear regression the JAX way: optax optimizers in one jitted ``lax.scan``.

``fit`` trains ``y ≈ intercept + x · coef`` (the tutorial's model, or ``p`` features) with any
optax optimizer; ``ols`` is the closed-form answer; ``bootstrap`` trains many resamples in one
vmapped call and ``confidence_interval`` turns them into percentile intervals.
"""

from __future__ import annotations

from funcdiff.regression._bootstrap import bootstrap, confidence_interval, standard_error
from funcdiff.regression._fit import DivergenceError, fit, mse, predict
from funcdiff.regression._ols import ols
from funcdiff.regression._result import DIVERGED, OK, FitLog, FitResult

__all__ = [
    "DIVERGED",
    "OK",
    "DivergenceError",
    "FitLog",
    "FitResult",
    "bootstrap",
    "confidence_interval",
    "fit",
    "mse",
    "ols",
    "predict",
    "standard_error",
]

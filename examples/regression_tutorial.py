"""The tutorial's linear regression with funcdiff.regression: SGD in one jitted lax.scan.

Run: PYTHONPATH=. python examples/regression_tutorial.py

Sample output (float32, CPU):

    FitResult: 500 epochs, ok: the loss stayed finite
    parameter  value
    ---------  --------
    intercept  1.792753
    coef       0.978145
    final loss: 1.036453
    ...
    least squares: intercept 1.792753, coef 0.978145
    bootstrap (1000 resamples, one call): coef 95% interval [0.78, 1.18]
"""

from __future__ import annotations

import jax
import optax

from funcdiff import seed
from funcdiff.regression import bootstrap, confidence_interval, fit, ols


def main() -> None:
    x, y = seed.regression_data(jax.random.key(0), 100)  # y = 2 + x + noise
    sgd = optax.sgd(0.1)
    result = fit(x, y, optimizer=sgd, epochs=500, log_every=100)
    print(result)
    sol = ols(x, y)
    print(f"least squares: intercept {float(sol['intercept']):.6f}, coef {float(sol['coef']):.6f}")
    boot = bootstrap(jax.random.key(1), x, y, 1000, optimizer=sgd, epochs=500)
    lo, hi = confidence_interval(boot, level=0.95)["coef"]
    interval = f"[{float(lo):.2f}, {float(hi):.2f}]"
    print(f"bootstrap (1000 resamples, one call): coef 95% interval {interval}")


if __name__ == "__main__":
    main()

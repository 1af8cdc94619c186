"""The autodiff tutorial, step by step, with funcdiff and JAX.

Run:  python examples/seed_autodiff.py

Sample output (float32, CPU):
OUTPUT_PLACEHOLDER
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import funcdiff
from funcdiff import regression, seed

# 1. The gradient of g(f(x)) at (0.5, 0.75). In PyTorch: requires_grad, y.backward(), x.grad.
#    In JAX: a pure function, transformed by jax.grad and compiled by jax.jit.
x = jnp.array([0.5, 0.75])
grad_fn = jax.jit(jax.grad(seed.composite))
print("jax.grad           :", grad_fn(x))  # tutorial: tensor([1.3633, 0.1912])

# 2. The manual derivative check: the closed form derived by hand.
print("manual_grad        :", seed.manual_grad(x))

# 3. Finite differences: forward with h = 1e-3 as the tutorial, then central, then a check.
print("forward difference :", funcdiff.fd_grad(seed.composite, x, scheme="forward", step=1e-3))
print("central difference :", funcdiff.fd_grad(seed.composite, x, scheme="central", step=1e-3))
check = funcdiff.check_grad(seed.composite, x)
print("check_grad ok      :", check.ok)

# 4. Linear regression y = 2 + x + noise, fitted by SGD(lr=0.1) for 500 epochs on the MSE.
#    The whole training run is one jitted lax.scan driven by optax.
k_data, k_init = jax.random.split(jax.random.key(0))
x_train, y_train = seed.regression_data(k_data, n=100)
b = jax.random.normal(k_init, (2,))
result = regression.fit(
    x_train,
    y_train,
    optimizer=optax.sgd(0.1),
    epochs=500,
    params={"intercept": b[0], "coef": b[1]},
    log_every=100,
)
for epoch, loss, g0, g1 in zip(
    result.log.epoch,
    result.log.loss,
    result.log.grad["intercept"],
    result.log.grad["coef"],
    strict=True,
):
    print(
        f"Epoch {int(epoch)}: Loss = {float(loss):.6f}  grad b0 = {float(g0):+.3e}  "
        f"grad b1 = {float(g1):+.3e}"
    )
ols = regression.ols(x_train, y_train)
print(
    f"b0: {float(result.params['intercept']):.6f}   (least squares {float(ols['intercept']):.6f})"
)
print(f"b1: {float(result.params['coef']):.6f}   (least squares {float(ols['coef']):.6f})")

"""The tutorial, end to end, the JAX way: what ``funcdiff demo`` runs and prints.

Sections, in the tutorial's order:

1. the gradient of ``g(f(x))`` at (0.5, 0.75) by ``jax.jit(jax.grad(...))``;
2. the hand-derived gradient (:func:`funcdiff.seed.manual_grad`);
3. finite differences, forward with h = 1e-3 exactly as the tutorial, and central;
4. the linear regression ``y = 2 + x + noise`` fitted by ``optax.sgd(lr)`` inside one jitted
   ``lax.scan`` (:func:`funcdiff.regression.fit`), logged every 100 epochs, beside the closed-form
   least-squares solution (:func:`funcdiff.regression.ols`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcdiff import seed
from funcdiff._config import one_shot_jit, resolve_device, scoped
from funcdiff._report import table
from funcdiff._validation import check_int, check_positive_float

__all__ = ["FD_STEP", "DemoResult", "run_demo"]

FD_STEP = 1e-3
"""The tutorial's finite-difference step."""

_LOG_EVERY = 100


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """Every number of the tutorial, recomputed with funcdiff.

    Attributes:
      gradient: ``jax.grad`` of ``composite`` at (0.5, 0.75).
      manual_gradient: the hand-derived gradient at the same point.
      fd_forward, fd_central: finite-difference gradients with step :data:`FD_STEP`.
      step: the finite-difference step.
      n, epochs, lr: the regression's settings.
      log: ``[{"epoch", "loss", "grad": [d/db0, d/db1]}]`` at epochs 0, 100, ... (before that
        epoch's update, as the tutorial prints it).
      b0, b1: the fitted intercept and slope.
      ols: the closed-form least-squares ``(b0, b1)``.
      final_loss: the mean squared error at the fitted parameters.
      device, dtype: where and in what precision it ran.
      versions: versions of jax, jaxlib, optax.
    """

    gradient: tuple[float, float]
    manual_gradient: tuple[float, float]
    fd_forward: tuple[float, float]
    fd_central: tuple[float, float]
    step: float
    n: int
    epochs: int
    lr: float
    log: tuple[dict[str, Any], ...]
    b0: float
    b1: float
    ols: tuple[float, float]
    final_loss: float
    device: str
    dtype: str
    versions: dict[str, str]

    @property
    def ok(self) -> bool:
        """Autodiff agrees with the hand-derived gradient and the fit is finite."""
        tol = 1e-5 if self.dtype == "float32" else 1e-10
        agree = np.allclose(self.gradient, self.manual_gradient, rtol=tol, atol=tol)
        return bool(agree and np.isfinite([self.b0, self.b1, self.final_loss]).all())

    def to_dict(self) -> dict[str, Any]:
        """The ``funcdiff demo --json`` object."""
        return {
            "gradient": list(self.gradient),
            "manual_gradient": list(self.manual_gradient),
            "finite_difference": {
                "forward": list(self.fd_forward),
                "central": list(self.fd_central),
                "step": self.step,
            },
            "regression": {
                "n": self.n,
                "epochs": self.epochs,
                "lr": self.lr,
                "log": [dict(row) for row in self.log],
                "b0": self.b0,
                "b1": self.b1,
                "ols": list(self.ols),
                "final_loss": self.final_loss,
            },
            "device": self.device,
            "dtype": self.dtype,
            "versions": dict(self.versions),
        }

    def __str__(self) -> str:
        x = seed.POINT
        sections = [
            table(
                ["method", "d/dx1", "d/dx2"],
                [
                    ["jax.jit(jax.grad(composite))", *self.gradient],
                    ["manual_grad (by hand)", *self.manual_gradient],
                    [f"forward difference, h={self.step:g}", *self.fd_forward],
                    [f"central difference, h={self.step:g}", *self.fd_central],
                ],
                title=f"1-3. Gradient of g(f(x)) at x = {x}  [{self.dtype} on {self.device}]",
            ),
            table(
                ["epoch", "loss", "grad b0", "grad b1"],
                [[r["epoch"], r["loss"], *r["grad"]] for r in self.log],
                title=(
                    f"4. Linear regression y = 2 + x + noise, n={self.n}: "
                    f"optax.sgd(lr={self.lr:g}), {self.epochs} epochs in one jitted lax.scan"
                ),
                digits=6,
            ),
            table(
                ["", "b0", "b1"],
                [["optax.sgd", self.b0, self.b1], ["least squares (closed form)", *self.ols]],
                digits=6,
            )
            + f"\nfinal loss (MSE): {self.final_loss:.6f}",
        ]
        return "\n\n".join(sections)


def _versions() -> dict[str, str]:
    out = {}
    for name in ("jax", "jaxlib", "optax"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            out[name] = "unknown"
    return out


def _pair(a: jax.Array) -> tuple[float, float]:
    v = np.asarray(a, dtype=np.float64).ravel()
    return float(v[0]), float(v[1])


@one_shot_jit(quick_run=True, static_argnums=(1, 2))
def _sections(x: jax.Array, seed_value: int, n: int) -> tuple[Any, ...]:
    """Everything of the demo but the fit, traced and compiled as one program."""
    from funcdiff import regression

    gradient = jax.grad(seed.composite)(x)
    manual = seed.manual_grad(x)
    k_data, k_init = jax.random.split(jax.random.key(seed_value))
    xs, ys = seed.regression_data(k_data, n)
    b_init = jax.random.normal(k_init, (2,), dtype=xs.dtype)
    params = {"intercept": b_init[0], "coef": b_init[1]}
    return gradient, manual, xs, ys, params, regression.ols(xs, ys)


def run_demo(
    *,
    seed_value: int = 0,
    n: int = 100,
    epochs: int = 500,
    lr: float = 0.1,
    device: str | None = None,
    x64: bool = False,
) -> DemoResult:
    """Reproduces every section of the tutorial.

    Args:
      seed_value: seed of the PRNG key for the regression data and initial parameters.
      n: number of regression points.
      epochs: SGD epochs (full batch, as the tutorial).
      lr: SGD learning rate.
      device: ``"cpu"``, ``"gpu"``, ``"tpu"`` or None for JAX's default device.
      x64: run in float64 (scoped to this call).

    Returns:
      A :class:`DemoResult`.

    Raises:
      TypeError, ValueError: bad settings.
      DeviceNotFoundError: ``device`` does not exist here.
    """
    from funcdiff import fd_grad, regression  # the demo sits on top of the public API

    n = check_int("n", n, minimum=1)
    epochs = check_int("epochs", epochs, minimum=1)
    lr = check_positive_float("lr", lr)
    dev = resolve_device(device)
    with scoped(x64=x64, device=dev):
        dtype = jnp.result_type(float)
        x = jax.device_put(np.asarray(seed.POINT, dtype=dtype))
        # sections 1-3 and the regression's data, initial parameters and closed form: one
        # program (then the fit is the other), instead of one per section and per eager op
        gradient, manual, xs, ys, params, ols = _sections(x, seed_value, n)
        # fd_grad checks its point concretely: it runs outside (one program per scheme)
        forward = fd_grad(seed.composite, x, scheme="forward", step=FD_STEP)
        central = fd_grad(seed.composite, x, scheme="central", step=FD_STEP)
        fit = regression.fit(
            xs, ys, optimizer=optax.sgd(lr), epochs=epochs, params=params, log_every=_LOG_EVERY
        )
        log_epochs = np.asarray(fit.log.epoch)
        log_loss = np.asarray(fit.log.loss, dtype=np.float64)
        log_g0 = np.asarray(fit.log.grad["intercept"], dtype=np.float64)
        log_g1 = np.asarray(fit.log.grad["coef"], dtype=np.float64)
        log = tuple(
            {"epoch": int(e), "loss": float(lo), "grad": [float(a), float(b)]}
            for e, lo, a, b in zip(log_epochs, log_loss, log_g0, log_g1, strict=True)
        )
        return DemoResult(
            gradient=_pair(gradient),
            manual_gradient=_pair(manual),
            fd_forward=_pair(forward),
            fd_central=_pair(central),
            step=FD_STEP,
            n=n,
            epochs=epochs,
            lr=lr,
            log=log,
            b0=float(fit.params["intercept"]),
            b1=float(fit.params["coef"]),
            ols=(float(ols["intercept"]), float(ols["coef"])),
            final_loss=float(fit.final_loss),
            device=dev.platform,
            dtype=str(x.dtype),
            versions=_versions(),
        )

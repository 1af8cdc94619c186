"""Case ``gradcheck``: checking a gradient against finite differences, float64, d inputs.

The function is the one issue 4 sets for this benchmark, ``f(x) = logsumexp(tanh(A x))`` with
``A`` a d × d matrix of N(0, 1/d) entries (so ``tanh`` is not saturated), at ``x ~ N(0, 1)^d``,
float64. ``funcdiff`` is
``funcdiff.check_grad`` in ``mode="full"`` (every coordinate) and ``mode="directional"``
(random directions); the baselines are ``torch.autograd.gradcheck`` (default and
``fast_mode=True``) and ``jax.test_util.check_grads`` (reverse mode, order 1). Each
implementation gets a fresh function, so ``cold_s`` is a first call (compilation included)
and ``median_s`` the warm one.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure
from funcdiff._config import scoped

NAME = "gradcheck"
_TORCH = ("torch-gradcheck", "torch-gradcheck-fast")


def count(settings: Settings) -> int:
    return len(settings.gradcheck_dims) * 5


def problem(d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A, x)`` for dimension ``d``, the same for every implementation."""
    rng = np.random.default_rng(d)
    return rng.standard_normal((d, d)) / np.sqrt(d), rng.standard_normal(d)


def make_fun(a: jax.Array) -> Any:
    """A fresh JAX function object (so nothing compiled for another impl is reused)."""

    def lse_tanh(x: jax.Array) -> jax.Array:
        return jax.nn.logsumexp(jnp.tanh(a @ x))

    return lse_tanh


def load_check_grad() -> Any:
    """``funcdiff.check_grad``, or None while it has not landed."""
    try:
        return importlib.import_module("funcdiff").check_grad
    except AttributeError:
        return None


def run(ctx: Context) -> None:
    check_grad = load_check_grad()
    if check_grad is None:
        ctx.skip(NAME, "funcdiff", "funcdiff.check_grad is not available yet")
    if ctx.torch is None:
        for impl in _TORCH:
            ctx.skip(NAME, impl, str(ctx.torch_note))
    with scoped(x64=True, device=ctx.device):
        for d in ctx.settings.gradcheck_dims:
            _one_size(ctx, d, check_grad)


def _one_size(ctx: Context, d: int, check_grad: Any) -> None:
    """Times every checker on the same float64 point of dimension ``d``."""
    from jax.test_util import check_grads

    budget = ctx.settings.budget
    a_np, x_np = problem(d)
    a = jax.device_put(jnp.asarray(a_np, dtype=jnp.float64), ctx.device)
    x = jax.device_put(jnp.asarray(x_np, dtype=jnp.float64), ctx.device)

    for mode in ("full", "directional"):
        if check_grad is None:
            ctx.step("skip")
            continue
        fun = make_fun(a)
        kw: dict[str, Any] = {"mode": mode}
        if mode == "directional":
            kw["key"] = jax.random.key(0)
        t = measure(functools.partial(check_grad, fun, x, **kw), _ok, budget)
        res = check_grad(fun, x, **kw)
        note = None if bool(getattr(res, "ok", True)) else "check_grad reported not ok"
        ctx.record(NAME, "funcdiff", d, t, mode=mode, note=note, dtype="float64")

    fun = make_fun(a)
    t = measure(lambda: check_grads(fun, (x,), order=1, modes=("rev",)), lambda r: r, budget)
    ctx.record(NAME, "jax-check-grads", d, t, dtype="float64")

    torch = ctx.torch
    if torch is None:
        ctx.step("skip")
        ctx.step("skip")
        return
    from funcdiff._bench.cases import _torchfns as T

    at = torch.tensor(a_np, dtype=torch.float64, device=ctx.torch_device)
    xt = torch.tensor(x_np, dtype=torch.float64, device=ctx.torch_device)
    xt.requires_grad_(True)
    for impl, fast in (("torch-gradcheck", False), ("torch-gradcheck-fast", True)):
        t = measure(
            functools.partial(torch.autograd.gradcheck, T.lse_tanh(at), (xt,), fast_mode=fast),
            ctx.torch_sync,
            budget,
        )
        ctx.record(NAME, impl, d, t, dtype="float64")


def _ok(result: Any) -> Any:
    """Waits for a check's arrays (the record may hold device arrays)."""
    return jax.block_until_ready(result) if _is_pytree_of_arrays(result) else result


def _is_pytree_of_arrays(result: Any) -> bool:
    try:
        leaves = jax.tree.leaves(result)
    except Exception:
        return False
    return any(isinstance(leaf, jax.Array) for leaf in leaves)

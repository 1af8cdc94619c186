"""Case ``bootstrap``: many resampled fits of the tutorial's regression in one call.

``funcdiff`` is ``funcdiff.regression.bootstrap`` (the resamples vmapped, one jitted call);
``torch-eager`` is the tutorial's loop once per resample, in a Python loop; ``torch-func`` is
``torch.func.vmap`` of ``torch.func.grad`` over the resamples, one Python loop over epochs.
``size`` is the number of resamples (n = ``bootstrap_n`` points, ``bootstrap_epochs`` epochs
of SGD(0.1)). The torch-eager loop is timed on a prefix of the resamples and scaled
linearly (each resample is an independent fit); its ``note`` says so.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import jax
import numpy as np

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure
from funcdiff._bench.cases.regression import LR, data

NAME = "bootstrap"


def count(settings: Settings) -> int:
    return len(settings.bootstrap_resamples) * 3


def load_bootstrap() -> Any:
    """``funcdiff.regression.bootstrap``, or None while it has not landed."""
    try:
        return importlib.import_module("funcdiff.regression").bootstrap
    except (ImportError, AttributeError):
        return None


def run(ctx: Context) -> None:
    import optax

    s = ctx.settings
    boot = load_bootstrap()
    if boot is None:
        ctx.skip(NAME, "funcdiff", "funcdiff.regression.bootstrap is not available yet")
    if ctx.torch is None:
        for impl in ("torch-eager", "torch-func"):
            ctx.skip(NAME, impl, str(ctx.torch_note))
    x, y = data(s.bootstrap_n)
    opt = optax.sgd(LR)
    for r in s.bootstrap_resamples:
        _one_size(ctx, r, x, y, boot, opt)


def _one_size(ctx: Context, r: int, x: np.ndarray, y: np.ndarray, boot: Any, opt: Any) -> None:
    """Times ``r`` resampled fits with every implementation."""
    s = ctx.settings
    n, epochs = s.bootstrap_n, s.bootstrap_epochs
    extra: dict[str, Any] = {"epochs": epochs, "dtype": "float32"}
    if boot is not None:
        xj, yj = jax.device_put(x, ctx.device), jax.device_put(y, ctx.device)
        key = jax.random.key(0)

        def jax_run() -> Any:
            return boot(key, xj, yj, r, optimizer=opt, epochs=epochs)

        t = measure(jax_run, lambda res: jax.block_until_ready(res.params), s.slow_budget)
        ctx.record(NAME, "funcdiff", r, t, **extra)
    else:
        ctx.step("skip")
    torch = ctx.torch
    if torch is None:
        ctx.step("skip")
        ctx.step("skip")
        return
    from funcdiff._bench.cases import _torchfns as T

    idx = np.random.default_rng(r).integers(0, n, size=(r, n))
    xt = torch.from_numpy(x).to(ctx.torch_device)
    yt = torch.from_numpy(y).to(ctx.torch_device)
    it = torch.from_numpy(idx).to(ctx.torch_device)
    zero = torch.zeros(1, device=ctx.torch_device)
    k = min(r, s.bootstrap_torch_cap)

    def eager_loop() -> Any:
        return [T.tutorial_fit(xt[it[i]], yt[it[i]], zero, zero, epochs, LR) for i in range(k)]

    t = measure(eager_loop, ctx.torch_sync, s.slow_budget)
    note = None
    if k < r:
        scale = r / k
        t = dataclasses.replace(
            t,
            median_s=t.median_s * scale,
            min_s=t.min_s * scale,
            max_s=t.max_s * scale,
            cold_s=t.median_s * scale + t.compile_s,  # first-call overhead is paid once
        )
        note = f"timed on {k} resamples, scaled x{scale:g}"
    ctx.record(NAME, "torch-eager", r, t, note=note, **extra)

    vgrad = torch.func.vmap(torch.func.grad(T.mse_params), in_dims=((0, 0), 0, 0))
    xr, yr = xt[it], yt[it]

    def func_run() -> Any:
        b0 = torch.zeros(r, device=ctx.torch_device)
        b1 = torch.zeros(r, device=ctx.torch_device)
        for _ in range(epochs):
            g0, g1 = vgrad((b0, b1), xr, yr)
            b0, b1 = b0 - LR * g0, b1 - LR * g1
        return b1

    ctx.record(NAME, "torch-func", r, measure(func_run, ctx.torch_sync, s.slow_budget), **extra)

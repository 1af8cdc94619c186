"""Case ``seed-grad``: the tutorial's gradient of ``g(f(x))`` at (0.5, 0.75), per call.

``funcdiff`` is ``jax.jit(jax.grad(composite))``; ``jax-nojit`` is ``jax.grad`` op by op;
``torch-eager`` is the tutorial (``y = g(f(x)); y.backward(); x.grad``); ``torch-func`` is
``torch.func.grad``; ``torch-compile`` compiles the forward (backward through AOTAutograd).
Every call returns the gradient, synchronised.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff import seed
from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure

NAME = "seed-grad"
SIZE = 2  # the input dimension


def count(settings: Settings) -> int:
    return 5


def run(ctx: Context) -> None:
    b = ctx.settings.budget
    x = jax.device_put(jnp.asarray(seed.POINT, dtype=jnp.float32), ctx.device)
    expected = np.asarray(seed.manual_grad(x))

    jitted = jax.jit(jax.grad(seed.composite))
    t = measure(lambda: jitted(x), jax.block_until_ready, b)
    _check(jitted(x), expected, "funcdiff")
    # Ahead-of-time compile of a fresh jit, timed alone: trace + lower + XLA compile.
    t0 = time.perf_counter()
    jax.jit(jax.grad(seed.composite)).lower(x).compile()
    aot = time.perf_counter() - t0
    ctx.record(NAME, "funcdiff", SIZE, t, aot_compile_s=aot)
    nojit = jax.grad(seed.composite)
    ctx.record(NAME, "jax-nojit", SIZE, measure(lambda: nojit(x), jax.block_until_ready, b))

    torch = ctx.torch
    if torch is None:
        for impl in ("torch-eager", "torch-func", "torch-compile"):
            ctx.skip(NAME, impl, str(ctx.torch_note), steps=1)
        return
    from funcdiff._bench.cases import _torchfns as T

    xt = torch.tensor(np.asarray(seed.POINT, dtype=np.float32), device=ctx.torch_device)
    xt.requires_grad_(True)

    def eager():  # the tutorial
        xt.grad = None
        y = T.g(T.f(xt))
        y.backward()
        return xt.grad

    _check(eager(), expected, "torch-eager")
    ctx.record(NAME, "torch-eager", SIZE, measure(eager, ctx.torch_sync, b))

    func_grad = torch.func.grad(lambda v: T.g(T.f(v)))
    xd = xt.detach()
    _check(func_grad(xd), expected, "torch-func")
    ctx.record(NAME, "torch-func", SIZE, measure(lambda: func_grad(xd), ctx.torch_sync, b))

    if not ctx.settings.torch_compile:
        ctx.skip(NAME, "torch-compile", f"not run at level {ctx.settings.level!r}", steps=1)
        return
    forward = torch.compile(lambda v: T.g(T.f(v)), dynamic=False)

    def compiled():
        xt.grad = None
        forward(xt).backward()
        return xt.grad

    t = measure(compiled, ctx.torch_sync, b)
    _check(compiled(), expected, "torch-compile")
    ctx.record(NAME, "torch-compile", SIZE, t)


def _check(got: object, expected: np.ndarray, impl: str) -> None:
    """Every implementation must return the tutorial's gradient before it is timed."""
    arr = got.detach().cpu().numpy() if hasattr(got, "detach") else np.asarray(got)
    if not np.allclose(arr, expected, rtol=1e-5, atol=1e-6):
        raise AssertionError(f"{impl} returned {arr}, expected {expected}")

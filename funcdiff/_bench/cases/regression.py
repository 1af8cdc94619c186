"""Case ``regression``: the tutorial's linear regression, trained by full-batch SGD(0.1).

``funcdiff`` is ``funcdiff.regression.fit`` (the whole run in one jitted ``lax.scan``), and
``funcdiff[gram]`` the same with ``method="gram"`` (one pass builds the sufficient statistics,
then every epoch is O(1): a different algorithm, so it is labelled apart);
``torch-eager`` is the tutorial's loop; ``torch-compile`` the same epoch under
``torch.compile``; ``torch-func`` the loop with ``torch.func.grad``; ``numpy-pass`` is one
``numpy.dot(x, y)``, a single memory pass over the data: the floor for one epoch.
``funcdiff[mesh×k]`` (CPU, from 10⁶ rows, when JAX has k > 1 CPU devices: ``funcdiff bench``
gives it one per core) is the same autodiff ``fit`` with ``mesh=`` over those devices, the
data already laid out on the mesh: XLA runs a single-device program's loops on one core,
while PyTorch and NumPy use every core.
All start from zero parameters on the same float32 arrays; times are per run of ``epochs``
epochs, with ``per_epoch_s`` beside them (fewer epochs at the largest sizes).
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure

NAME = "regression"
LR = 0.1
_TORCH = ("torch-eager", "torch-compile", "torch-func")


def count(settings: Settings) -> int:
    return len(settings.regression) * 7


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's data, drawn once with NumPy so every implementation gets the same arrays."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n, dtype=np.float32)
    y = (2 + x + rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
    return x, y


def load_fit() -> Any:
    """``funcdiff.regression.fit``, or None while it has not landed."""
    try:
        return importlib.import_module("funcdiff.regression").fit
    except (ImportError, AttributeError):
        return None


def run(ctx: Context) -> None:
    import optax

    fit = load_fit()
    torch = ctx.torch
    s = ctx.settings
    if fit is None:
        ctx.skip(NAME, "funcdiff", "funcdiff.regression.fit is not available yet")
    if torch is None:
        for impl in _TORCH:
            ctx.skip(NAME, impl, str(ctx.torch_note))
    compiled_step = None
    if torch is not None and s.torch_compile:
        from funcdiff._bench.cases import _torchfns as T

        compiled_step = T.make_compiled_step(LR)
    elif torch is not None:
        ctx.skip(NAME, "torch-compile", f"not run at level {s.level!r}")
    opt = optax.sgd(LR)  # one optimizer object: fit caches its compiled run on it
    for n, epochs in s.regression:
        _one_size(ctx, n, epochs, fit, opt, compiled_step)


def _one_size(ctx: Context, n: int, epochs: int, fit: Any, opt: Any, compiled_step: Any) -> None:
    """Times every implementation on the same ``n`` points for ``epochs`` epochs."""
    budget = ctx.settings.slow_budget if n >= 1_000_000 else ctx.settings.budget
    x, y = data(n)

    def rec(
        impl: str, t: Any, epochs: int = epochs, mode: str | None = None, note: str | None = None
    ) -> None:
        ctx.record(
            NAME,
            impl,
            n,
            t,
            per_epoch_s=t.median_s / epochs,
            epochs=epochs,
            dtype="float32",
            mode=mode,
            note=note,
        )

    if ctx.device.platform == "cpu":
        rec("numpy-pass", measure(lambda: np.dot(x, y), lambda r: r, budget), epochs=1)
    else:  # the floor on an accelerator is a pass over device memory
        xd, yd = jax.device_put(x, ctx.device), jax.device_put(y, ctx.device)
        dot = jax.jit(jnp.dot)
        t = measure(lambda: dot(xd, yd), jax.block_until_ready, budget)
        rec("numpy-pass", t, epochs=1, note="one jnp.dot over device memory")

    coefs: dict[str, float] = {}
    if fit is not None:
        xj, yj = jax.device_put(x, ctx.device), jax.device_put(y, ctx.device)

        for method in ("autodiff", "gram"):

            def jax_run(method: str = method) -> Any:
                return fit(xj, yj, optimizer=opt, epochs=epochs, method=method)

            t = measure(jax_run, lambda r: jax.block_until_ready(r.params), budget)
            coefs[f"funcdiff[{method}]"] = float(jax_run().params["coef"])
            note = scratch_note(xj, yj, optimizer=opt, epochs=epochs, method=method)
            rec("funcdiff", t, mode=None if method == "autodiff" else method, note=note)
        _mesh_row(ctx, x, y, epochs, fit, opt, coefs, rec)
    else:
        for _ in range(3):
            ctx.step("skip")

    torch = ctx.torch
    if torch is None:
        for _ in range(3):
            ctx.step("skip")
        return
    from funcdiff._bench.cases import _torchfns as T

    xt = torch.from_numpy(x).to(ctx.torch_device)
    yt = torch.from_numpy(y).to(ctx.torch_device)
    zero = torch.zeros(1, device=ctx.torch_device)
    runs = {
        "torch-eager": lambda: T.tutorial_fit(xt, yt, zero, zero, epochs, LR),
        "torch-func": lambda: T.func_fit(xt, yt, zero[0], zero[0], epochs, LR),
    }
    if compiled_step is not None:
        runs["torch-compile"] = lambda: T.compiled_fit(compiled_step, xt, yt, zero, zero, epochs)
    else:
        ctx.step("skip")
    for impl, fn in runs.items():
        t = measure(fn, ctx.torch_sync, budget)
        coefs[impl] = float(fn().reshape(-1)[0])
        rec(impl, t)
    _agree(coefs, n)


MESH_MIN_ROWS = 1_000_000


def core_mesh(ctx: Context, n: int) -> jax.sharding.Mesh | None:
    """A 1-D mesh ``("rows",)`` over JAX's CPU devices, when there are several, the benchmark
    runs on CPU, the data is large enough for the blocked gradient, and the rows divide."""
    if ctx.device.platform != "cpu" or n < MESH_MIN_ROWS:
        return None
    devices = jax.devices("cpu")
    if len(devices) < 2 or n % len(devices):
        return None
    return jax.sharding.Mesh(np.array(devices), ("rows",))


def _mesh_row(
    ctx: Context, x: np.ndarray, y: np.ndarray, epochs: int, fit: Any, opt: Any,
    coefs: dict[str, float], rec: Any,
) -> None:  # fmt: skip
    mesh = core_mesh(ctx, x.shape[0])
    if mesh is None:
        ctx.step("skip")
        return
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows"))
    xm, ym = jax.device_put(x, rows), jax.device_put(y, rows)

    def mesh_run() -> Any:
        return fit(xm, ym, optimizer=opt, epochs=epochs, mesh=mesh)

    budget = ctx.settings.slow_budget
    t = measure(mesh_run, lambda r: jax.block_until_ready(r.params), budget)
    k = mesh.devices.size
    coefs[f"funcdiff[mesh×{k}]"] = float(mesh_run().params["coef"])
    note = scratch_note(xm, ym, optimizer=opt, epochs=epochs, mesh=mesh)
    rec("funcdiff", t, mode=f"mesh×{k}", note=f"rows sharded over {k} CPU devices; {note}")


def scratch_note(x: Any, y: Any, **fit_kwargs: Any) -> str:
    """The compiled run's scratch memory per device, in copies of that device's share of the
    data (the goal: at most 2)."""
    from funcdiff.regression._fit import compiled_memory

    temp = compiled_memory(x, y, **fit_kwargs).temp_size_in_bytes
    share = (x.nbytes + y.nbytes) / len(x.sharding.device_set)
    return f"XLA scratch {temp / share:.2g}× the data"


def _agree(coefs: dict[str, float], n: int) -> None:
    """All implementations ran the same SGD: their final slopes agree (float32 sums)."""
    if not coefs:
        return
    ref = next(iter(coefs.values()))
    for impl, c in coefs.items():
        if not np.isclose(c, ref, rtol=1e-3, atol=1e-4):
            raise AssertionError(f"regression n={n}: {impl} ended at slope {c}, others at {ref}")

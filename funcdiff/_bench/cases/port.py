"""Case ``port``: comparing a ported ResNet-18 layer by layer against PyTorch, float32.

The models are ``examples/port_resnet.py``'s (the torchvision-style ResNet-18 and its Flax NNX
port, weights copied by ``funcdiff.parity.load_torch_weights``), on a batch of ``size``
NCHW images (``Settings.port_shape``: batch 4, 64x64 at the full and quick levels).
``funcdiff`` is one ``funcdiff.parity.compare_model(..., isolate=True)`` call (every aligned
layer's output, isolated error and activation gradient, every parameter gradient), timed cold
and then once warm; the baselines are what a user would run anyway: ``torch-eager`` is one
torch forward + backward (with ``torch.set_flush_denormal(True)``, as XLA flushes subnormals),
``jax-jit`` one jitted JAX forward + backward, whose ``cold_s`` is the compile + forward +
backward. ``size`` is the batch size. The ``tiny`` level (the harness
test) skips the case: ResNet-18 alone compiles for seconds.

The example file is loaded from the source checkout; an installed wheel without ``examples/``
skips the case with a note.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import Budget, measure

NAME = "port"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "port_resnet.py"


def count(settings: Settings) -> int:
    return 3


def load() -> tuple[Any, ModuleType | None, str | None]:
    """``(funcdiff.parity, the example module, None)``, or Nones and what is missing."""
    try:
        parity = importlib.import_module("funcdiff.parity")
    except ImportError as e:
        return None, None, f"funcdiff.parity does not import: {e}"
    missing = [n for n in ("compare_model", "load_torch_weights") if not hasattr(parity, n)]
    if missing:
        names = " and ".join(f"funcdiff.parity.{m}" for m in missing)
        return None, None, f"{names} {'is' if len(missing) == 1 else 'are'} not available yet"
    if not EXAMPLE.exists():
        return None, None, f"needs the source checkout's {EXAMPLE.name} (examples/)"
    for mod, extra in (("torch", "torch"), ("flax", "flax")):
        if importlib.util.find_spec(mod) is None:
            return None, None, f"{mod} is not installed (pip install 'funcdiff[{extra}]')"
    spec = importlib.util.spec_from_file_location("funcdiff_bench_port_resnet", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return parity, module, None


def run(ctx: Context) -> None:
    if ctx.torch is None:
        note = f"the port case compares against torch: {ctx.torch_note}"
        ctx.skip(NAME, "funcdiff", note, steps=count(ctx.settings))
        return
    if ctx.settings.port_shape is None:
        note = f"not run at level {ctx.settings.level!r} (ResNet-18 compiles for seconds)"
        ctx.skip(NAME, "funcdiff", note, steps=count(ctx.settings))
        return
    parity, example, missing = load()
    if parity is None or example is None:
        ctx.skip(NAME, "funcdiff", str(missing), steps=count(ctx.settings))
        return
    import jax
    import jax.numpy as jnp
    from flax import nnx

    torch = ctx.torch
    batch, size = ctx.settings.port_shape
    torch_model, jax_model = example.make_models("float32")
    torch_model = torch_model.to(ctx.torch_device)
    mapping = parity.load_torch_weights(jax_model, torch_model)
    if not mapping.ok:
        raise AssertionError(f"load_torch_weights did not map every weight:\n{mapping}")
    x_np = example.make_input(batch, size, "float32")
    extra = {"dtype": "float32", "note": f"ResNet-18, batch {batch}, {size}x{size}"}

    # torch: one forward + backward (eval mode, like the comparison's default).
    torch_model.eval()
    xt = torch.tensor(x_np, device=ctx.torch_device)

    def torch_step() -> Any:
        torch_model.zero_grad(set_to_none=True)
        out = torch_model(xt)
        out.sum().backward()
        return out

    # Subnormal floats appear in this backward pass; XLA flushes them to zero, torch on CPU does
    # not by default and then runs 10-25x slower here (1.3-2.7 s instead of 0.11 s measured at
    # batch 4, 64x64). Timed with flushing on, like XLA, and switched back off afterwards.
    flushed = bool(torch.set_flush_denormal(True))
    try:
        t = measure(torch_step, ctx.torch_sync, ctx.settings.budget)
    finally:
        torch.set_flush_denormal(False)
    note = extra["note"] + ("; torch.set_flush_denormal(True), as XLA" if flushed else "")
    ctx.record(NAME, "torch-eager", batch, t, dtype="float32", note=note)

    # JAX: one jitted forward + backward; cold_s is compile + forward + backward.
    jax_model.eval()
    graphdef, state = nnx.split(jax_model)
    x = jax.device_put(jnp.asarray(x_np), ctx.device)

    @jax.jit
    def jax_step(state: Any, x: jax.Array) -> Any:
        def loss(state: Any) -> jax.Array:
            return jnp.sum(nnx.merge(graphdef, state)(x))

        return jax.value_and_grad(loss)(state)

    t = measure(lambda: jax_step(state, x), jax.block_until_ready, ctx.settings.budget)
    ctx.record(NAME, "jax-jit", batch, t, **extra)

    # funcdiff: the whole comparison, cold then once warm (it takes seconds), at the float32
    # tolerances the example documents for ResNet-18 (errors compound with depth).
    tol = dict(getattr(example, "FLOAT32_TOL", {}))
    budget = Budget(repeats=1, min_repeats=1, repeat_s=0.0, total_s=0.0, warmup=0)
    results: list[Any] = []

    def compare() -> Any:
        return parity.compare_model(jax_model, torch_model, x_np, isolate=True, **tol)

    t = measure(compare, results.append, budget)
    last = results[-1]
    layers = len(getattr(last, "layers", ()))
    params = len(getattr(last, "params", ()))
    verdict = "agrees" if bool(last.ok) else "DISAGREES"
    tols = "".join(f", {k}={v:g}" for k, v in tol.items())
    note = (
        f"{extra['note']}; compare_model(isolate=True{tols}): "
        f"{layers} layers, {params} params, {verdict}"
    )
    ctx.record(NAME, "funcdiff", batch, t, dtype="float32", note=note)

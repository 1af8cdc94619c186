"""``compare_model``: a JAX port against its torch module, layer by layer, forward and backward.

The data path: boundary checks -> align the two module trees (names, then kind and order) ->
run a deep copy of the torch module with hooks and the JAX model as one jitted forward+VJP
with recording wrappers (:mod:`._capture`, :mod:`._instrument`) -> compare every aligned
layer's output, input and output gradient with the row rule of :func:`funcdiff.parity.compare`
(``|jax - torch| <= atol + rtol |torch|``, NaN/inf in the same places, default tolerances per
dtype) -> locate the first divergence -> the convention check -> a :class:`ModelParityResult`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._config import ONE_SHOT_COMPILER_OPTIONS, OneShotJit, scoped
from funcdiff._validation import is_float_dtype
from funcdiff.parity import _measure as M
from funcdiff.parity._compare import DEFAULT_TOLERANCES, _check_tolerance
from funcdiff.parity._torch import require_torch
from funcdiff.parity.models import _conventions as C
from funcdiff.parity.models import _functional as F
from funcdiff.parity.models._capture import Recorder, capture_torch, recording
from funcdiff.parity.models._frameworks import framework_of
from funcdiff.parity.models._instrument import instrument, jax_modules
from funcdiff.parity.models._pairing import (
    act_to_jax,
    align_layers,
)
from funcdiff.parity.models._report import Finding, ModelParityResult
from funcdiff.parity.models._rows import first_divergence, layer_rows, param_rows

__all__ = ["compare_model"]

# the forward+backward program runs once: compile it with the CPU one-shot options
_RUN_OPTIONS = ONE_SHOT_COMPILER_OPTIONS


def _framework(jax_model: Any) -> str:
    """``framework_of`` less what a comparison cannot run: torch modules (said in
    ``compare_model``'s words) and the weight pytrees that ``load_torch_weights`` takes."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(jax_model, torch.nn.Module):
        raise TypeError(
            "Expected `jax_model` to be a Flax NNX module, an Equinox module or a function, got "
            f"the torch module {type(jax_model).__name__}; the torch model is the second argument."
        )
    kind = framework_of(jax_model)
    if kind == "pytree":
        raise TypeError(
            "Expected `jax_model` to be a Flax NNX module, an Equinox module or a function of "
            f"the inputs, got a {type(jax_model).__name__} of weights; pass a function that "
            "closes over them (mark intermediates with parity.tap)."
        )
    return kind


def _loss_pair(loss: Any) -> tuple[Callable[..., Any] | None, Callable[..., Any] | None]:
    if loss is None:
        return None, None
    if isinstance(loss, tuple | list) and len(loss) == 2 and all(map(callable, loss)):
        return loss[0], loss[1]
    if callable(loss):
        return loss, loss
    raise TypeError(
        "Expected `loss` to be a function of the model outputs returning a scalar (written for "
        f"both frameworks) or a pair (jax_loss, torch_loss), got {type(loss).__name__}."
    )


def _inputs(inputs: tuple[Any, ...]) -> list[np.ndarray]:
    if not inputs:
        raise TypeError("Expected at least one input array after `torch_module`, got none.")
    out = []
    for i, x in enumerate(inputs):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        try:
            a = np.asarray(x)
        except Exception:
            a = np.asarray(None)
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise TypeError(
                f"Expected `inputs[{i}]` to be a real NumPy/JAX array, got {type(x).__name__}."
            )
        out.append(a)
    return out


def compare_model(
    jax_model: Any,
    torch_module: Any,
    *inputs: Any,
    loss: Any = None,
    train: bool = False,
    isolate: bool = False,
    rtol: float | None = None,
    atol: float | None = None,
    key: Any = None,
) -> ModelParityResult:
    """Compares a JAX port with its torch module layer by layer, forward and backward.

    Both models get the same ``inputs`` (torch's layout: a channels-last NNX model transposes
    in its own ``__call__``). Aligned layers: torch modules and JAX submodules of the same
    dotted name (``layers.`` containers and Sequential indices reconciled), then leftover
    layers of the same kind in definition order; for a pure function, :func:`tap` names.
    Activations are converted from JAX's layout by shape (identical, channels-last, or
    sequence/batch swapped).

    Compared, with :func:`funcdiff.parity.compare`'s row rule and tolerances (dtype from the
    inputs: any float64 input runs both in float64 with x64 on for this call; matmuls at full
    precision in both, restored afterwards): every aligned layer's output and inputs; the model
    outputs; the gradient at every layer output and model input; every parameter gradient (by
    its torch name, in torch's layout) under ``loss`` or a seeded random output cotangent; in
    training mode the updated BatchNorm running statistics. ``first_divergence`` is the first
    layer (forward-hook order, so a child before its block) whose output fails while its
    inputs pass; when the forward agrees, the layer whose backward turns a good output gradient
    into a bad input gradient, else the owner of the first bad parameter gradient or statistic.
    The convention check (:mod:`funcdiff.parity.models._conventions`) fills ``diagnosis``.

    Args:
      jax_model: a ``flax.nnx.Module``, an ``equinox.Module`` (called as ``model(*inputs)``)
        or a pure function of the inputs with :func:`tap` calls. Not modified: a copy is
        instrumented.
      torch_module: the ``torch.nn.Module``; a deep copy runs (cast to the inputs' dtype).
      *inputs: arrays (NumPy, JAX or torch), given to both models.
      loss: a function of the model output returning a scalar, usable with both frameworks,
        or a pair ``(jax_loss, torch_loss)``; default: a seeded random output cotangent.
      train: training-mode forward (batch statistics) and running statistics compared. Dropout
        with a rate > 0 is refused (masks cannot be reproduced).
      isolate: also run every aligned JAX layer on torch's own input to it.
      rtol: relative tolerance for every row (default per dtype).
      atol: absolute tolerance for every row (default per dtype).
      key: ``jax.random.key`` or int seed for the output cotangent (default 0).

    Returns:
      A :class:`ModelParityResult`.

    Raises:
      TypeError: a bad model, input, ``loss`` or ``key``.
      ValueError: dropout active with ``train=True``; a model that raises (the message names
        the framework and the error); a torch side that computes no gradient (a detached
        output or ``loss``).
      ImportError: torch (or flax/equinox for such a model) missing.

    Examples:
      >>> import numpy as np, torch
      >>> from flax import nnx
      >>> from funcdiff.parity import compare_model, load_torch_weights
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 2))
      >>> class Port(nnx.Module):
      ...     def __init__(self):
      ...         self.layers = nnx.List([nnx.Linear(3, 2, rngs=nnx.Rngs(0))])
      ...     def __call__(self, x):
      ...         return self.layers[0](x)
      >>> jm = Port()
      >>> jm.layers[0].kernel[...] = tm[0].weight.detach().numpy().T
      >>> jm.layers[0].bias[...] = tm[0].bias.detach().numpy()
      >>> r = compare_model(jm, tm, np.ones((4, 3), np.float32))
      >>> r.ok, r.first_divergence, [x.torch_name for x in r.layers]
      (True, None, ['input[0]', '0', 'output'])
    """
    torch = require_torch()
    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(
            f"Expected `torch_module` to be a torch.nn.Module, got {type(torch_module).__name__}."
        )
    framework = _framework(jax_model)
    jloss, tloss = _loss_pair(loss)
    tol = {k: _check_tolerance(k, v) for k, v in (("rtol", rtol), ("atol", atol))}
    for flag, value in (("train", train), ("isolate", isolate)):
        if not isinstance(value, bool):
            raise TypeError(f"Expected `{flag}` to be a bool, got {type(value).__name__}.")
    xs = _inputs(inputs)
    floats = [x for x in xs if is_float_dtype(x.dtype)]
    if not floats:
        raise TypeError("Expected at least one floating-point input (gradients need one).")
    x64 = any(x.dtype == np.float64 for x in floats)
    dtype = "float64" if x64 else str(max((x.dtype for x in floats), key=lambda d: np.finfo(d).eps))
    rng = M._seed_rng(key)
    tdtype = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16}.get(
        dtype, torch.float32
    )
    if train:
        for name, m in torch_module.named_modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
                raise ValueError(
                    f"`train=True` with dropout p={m.p} in the torch module at `{name}`: dropout "
                    "masks cannot be reproduced across frameworks. Pass both models with dropout "
                    "0 (or compare in eval mode)."
                )
    torch_names = [n for n, _ in torch_module.named_modules() if n]
    torch_tree = tuple(
        (n, type(m).__name__, n.count(".")) for n, m in torch_module.named_modules() if n
    )
    notes: list[str] = []
    with scoped(x64=x64, matmul_precision="highest"), M.torch_precision(torch, float64=x64):
        if framework == "function":
            pairs: list[tuple[str, str, str]] = []
            hook_names = torch_names
        else:
            jmods = [(p, m) for p, m in jax_modules(jax_model, framework) if _callable_layer(m)]
            pairs = align_layers(torch_module, jmods, _weight_layers(jax_model, torch_module))
            hook_names = [t for t, _, _ in pairs]
            aligned = {j for _, j, _ in pairs}
            lone = [
                p
                for p, m in jmods
                if p not in aligned
                and not any(a.startswith(p + ".") or p.startswith(a + ".") for a in aligned)
            ]
            if lone:
                notes.append(f"JAX layers without a torch twin: {', '.join(lone[:8])}")
        prog = instrument(
            jax_model, framework, [j for _, j, _ in pairs], train=train, dtype=np.dtype(dtype)
        )
        jxs = [jnp.asarray(x) for x in xs]
        fidx = [i for i, x in enumerate(xs) if is_float_dtype(x.dtype)]
        rec = Recorder()

        def forward(params: Any, rest: Any, *fl: Any) -> tuple[Any, Any]:
            full = list(jxs)
            for i, v in zip(fidx, fl, strict=True):
                full[i] = v
            return prog.run(params, rest, tuple(full))

        with recording(rec):
            try:
                # the whole model's jaxpr (for the functional check) and its output shapes
                model_jaxpr, out_spec = jax.make_jaxpr(
                    lambda p, rest, *fl: forward(p, rest, *fl)[0], return_shape=True
                )(prog.params, prog.rest, *[jxs[i] for i in fidx])
            except Exception as e:
                raise ValueError(
                    f"The JAX model ({framework}) raised on the inputs: {type(e).__name__}: {e}"
                ) from None
        trace_order = list(rec.order)
        if framework == "function":
            taps = {k.split("#")[0] for k in trace_order}
            pairs = [
                (n, n, type(torch_module.get_submodule(n)).__name__)
                for n in torch_names
                if n in taps
            ]
            hook_names = [t for t, _, _ in pairs]
            if not taps:
                notes.append(
                    "no taps recorded: only the outputs compared (mark intermediates with "
                    "parity.tap; a function jitted and traced before the comparison hides them)"
                )
            missing = sorted(taps - set(torch_names))
            if missing:
                notes.append(f"taps without a torch module of that name: {', '.join(missing)}")
        jout_leaves = [
            v for v in jax.tree_util.tree_leaves(out_spec) if is_float_dtype(np.dtype(v.dtype))
        ]
        cots_holder: dict[str, list[np.ndarray]] = {}

        def draw(outs: list[np.ndarray]) -> list[np.ndarray]:
            cots = [rng.standard_normal(o.shape).astype(o.dtype) for o in outs]
            cots_holder["c"] = cots
            return cots

        try:
            tc = capture_torch(
                torch,
                torch_module,
                xs,
                hook_names,
                train=train,
                dtype=tdtype,
                cotangents=None if tloss is not None else draw,
                loss=tloss,
            )
        except Exception as e:
            raise ValueError(
                f"The torch module {type(torch_module).__name__} raised on the inputs: "
                f"{type(e).__name__}: {e}"
            ) from None
        if len(jout_leaves) != len(tc.outputs):
            raise ValueError(
                f"The JAX model returns {len(jout_leaves)} float arrays, the torch module "
                f"{len(tc.outputs)}; return the same outputs from both."
            )
        if not (tc.grads or tc.param_grads or any(g is not None for g in tc.input_grads)):
            # torch's backward never ran or reached nothing: the JAX gradients have no partner,
            # and a result without its backward half must not read as agreement
            raise ValueError(
                "The torch side computed no gradient: its output (or `loss`) does not require "
                "grad (a .detach(), torch.no_grad() or requires_grad_(False) in the torch model "
                "or loss?), so the backward passes cannot be compared. Keep the torch graph "
                "attached."
            )
        jcots = None
        backward = True
        if tloss is None:
            jcots = [
                act_to_jax(c, tuple(s.shape))
                for c, s in zip(cots_holder["c"], jout_leaves, strict=True)
            ]
            if any(c.shape != tuple(s.shape) for c, s in zip(jcots, jout_leaves, strict=True)):
                # outputs of different shapes: the forward says where; no shared cotangent
                backward = False
                jcots = [np.zeros(s.shape, s.dtype) for s in jout_leaves]
                notes.append("output shapes differ: gradients not compared")

        def core(params: Any, rest: Any, fl: list[Any], cots: Any) -> Any:
            rec.begin_trace()
            if jloss is not None:

                def scalar(p: Any, *f: Any) -> Any:
                    out, new_rest = forward(p, rest, *f)
                    return jloss(out), (out, new_rest)

                (_, (out, new_rest)), grads = jax.value_and_grad(
                    scalar, argnums=tuple(range(len(fl) + 1)), has_aux=True
                )(params, *fl)
                return out, grads, new_rest
            out, vjp, new_rest = jax.vjp(
                lambda p, *f: forward(p, rest, *f), params, *fl, has_aux=True
            )
            leaves, tdef = jax.tree_util.tree_flatten(out)
            it = iter(cots)
            ct = [
                next(it)
                if is_float_dtype(np.dtype(v.dtype))
                else np.zeros(v.shape, jax.dtypes.float0)
                for v in leaves
            ]
            return out, vjp(jax.tree_util.tree_unflatten(tdef, ct)), new_rest

        with recording(rec):
            try:
                out, grads, new_rest = OneShotJit(core, _RUN_OPTIONS)(
                    prog.params, prog.rest, [jxs[i] for i in fidx], jcots
                )
                jax.block_until_ready(grads)
            except Exception as e:
                raise ValueError(
                    f"The JAX model ({framework}) raised in the forward/backward run: "
                    f"{type(e).__name__}: {e}"
                ) from None
        # the run's dtype sets the tolerance, not the JAX array's: a float32 statistic in a
        # float64 run is held to float64 tolerances
        d_rtol, d_atol = DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES["float32"])
        r = d_rtol if tol["rtol"] is None else tol["rtol"]
        a = d_atol if tol["atol"] is None else tol["atol"]
        rows = layer_rows(
            pairs, tc, rec, prog, xs, fidx, grads, out, r, a, isolate, notes, torch_module
        )
        prows = param_rows(
            pairs, tc, prog, grads[0], new_rest, torch_module, train, r, a, notes, jax_model
        )
        if not backward:
            rows = [x._replace(grad=None) for x in rows]
            prows = [p for p in prows if p.quantity != "grad"]
        findings = C.check_conventions(
            pairs,
            torch_module,
            prog,
            rec,
            dtype=dtype,
            train=train,
            trace_order=trace_order,
            torch_order=tc.pre_order,
            model_layers=dict(jax_modules(jax_model, framework)) if framework != "function" else {},
        )
        findings = F.merge(
            findings,
            F.check_functional(
                tc.functional,
                pairs,
                rows,
                model_jaxpr.jaxpr,
                framework=framework,
                torch_module=torch_module,
            ),
        )
    first = first_divergence(rows, prows, pairs)
    base = (first or "").split("#")[0]
    # torch-side suspects where the JAX side cannot be read: a pure function, or attention
    # masks (runtime values)
    if (
        base
        and base in torch_names
        and not any(f.layer == base for f in findings)
        and (
            framework == "function"
            or type(torch_module.get_submodule(base)).__name__ == "MultiheadAttention"
        )
    ):
        findings = [*findings, *C.suspect(base, torch_module.get_submodule(base), None)]
    findings = _order_findings(findings, first)
    return ModelParityResult(
        tuple(rows), tuple(prows), first, tuple(findings), dtype, train, tuple(notes), torch_tree
    )


def _weight_layers(jax_model: Any, torch_module: Any) -> list[tuple[str, str, str]]:
    """The layer alignment ``load_torch_weights`` finds (names, ``rules``-free order and
    shapes), on a copy; empty when it cannot align."""
    from funcdiff.parity.models._weights import load_torch_weights

    try:
        from flax import nnx

        if isinstance(jax_model, nnx.Module):
            jax_model = nnx.clone(jax_model)
    except ImportError:
        pass
    try:
        return [tuple(x) for x in load_torch_weights(jax_model, torch_module, strict=False).layers]  # type: ignore[misc]
    except Exception:
        return []


def _callable_layer(m: Any) -> bool:
    name = type(m).__name__
    return callable(m) and name not in ("List", "Dict", "Sequence", "Variable")


def _order_findings(findings: list[Finding], first: str | None) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.layer != (first or "").split("#")[0],))

r"""``compare_training``: a JAX port and its torch model trained side by side, step by step.

Both frameworks start from torch's weights and see the same batches. Every step compares the
loss, every parameter's gradient, the optimizer's update, the parameters after the step, the
float buffers (BatchNorm running statistics) and the learning rate, each by torch name. The
first step where any of them leaves its tolerance is the *first divergence*; it is named with
its part: **forward** (loss, running statistics), **gradient**, **optimizer** (lr, update,
parameters).

How the JAX side runs: the port is turned into a pure function of the parameters in torch's
layout (one array per ``named_parameters()`` entry; the layout rules of the weight loader
become one gather inside the step), so gradients, updates and parameters are compared
element for element by torch name. The optax transformation ``tx`` is applied to the list of
parameters the torch optimizer holds, group after group, in torch's shapes: the convention
of :func:`~funcdiff.parity.optax_like`. The whole step (forward, ``value_and_grad``,
``tx.update``) is one ``jax.jit`` program, compiled once for the run.

Tolerances per element: ``|jax - torch| <= (atol + rtol |torch|) * envelope(k)`` at step
``k`` (1-based). float64: ``envelope = 1`` with ``(rtol, atol) = (1e-9, 1e-12)``: the two
frameworks must agree at every step. float32: ``(1e-4, 1e-5)`` and
``envelope(k) = 1 + k / 10`` for runs without teacher forcing, and judged norm-wise per
tensor (the allowance of every element is ``atol + rtol max|torch tensor|``: float32 rounding
moves ReLU kinks, which changes single gradient elements by their own size). The envelope is
set from measurement (docs/training_parity.md): honest float32 runs of the example models
drift apart by a factor 1.001-1.004 per step and stay at least 7x inside it over 1000 steps;
with teacher forcing errors do not accumulate and the envelope stays 1.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcdiff._config import scoped
from funcdiff._validation import check_int, check_positive_float
from funcdiff.parity import _optim
from funcdiff.parity._compare import DEFAULT_TOLERANCES, _check_tolerance, compare_arrays
from funcdiff.parity._measure import torch_precision
from funcdiff.parity._torch import require_torch
from funcdiff.parity.models import _training_result as R
from funcdiff.parity.models import _training_setup as S
from funcdiff.parity.models._training_result import (
    PART,
    QUANTITIES,
    Drift,
    TrainingParityResult,
    TrainingStep,
    envelope,
)

__all__ = ["Drift", "TrainingParityResult", "TrainingStep", "compare_training"]

# ----------------------------------------------------------------------------- inputs


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception:
        raise TypeError(f"Expected {name} to be an array, got {type(x).__name__}.") from None


def _batches(batches: Iterable[Any], steps: int | None, dtype: str) -> list[tuple[Any, Any]]:
    if not isinstance(batches, Iterable):
        raise TypeError(
            f"Expected `batches` to be an iterable of (inputs, targets), got "
            f"{type(batches).__name__}."
        )
    items = list(batches if steps is None else itertools.islice(batches, steps))
    if not items:
        raise ValueError("Expected `batches` to hold at least one (inputs, targets), got none.")
    if steps is not None and len(items) < steps:
        raise ValueError(
            f"Expected `batches` to hold at least `steps`={steps} batches, got {len(items)}."
        )
    out = []
    for i, b in enumerate(items):
        if not (isinstance(b, tuple | list) and len(b) == 2):
            raise TypeError(
                f"Expected every item of `batches` to be a pair (inputs, targets), got "
                f"{type(b).__name__} at index {i}."
            )
        pair = []
        for j, part in enumerate(b):
            a = _to_numpy(part, f"`batches[{i}][{j}]`")
            if np.issubdtype(a.dtype, np.floating):
                a = a.astype(dtype)
            pair.append(a)
        out.append((pair[0], pair[1]))
    first = [(a.shape, a.dtype) for a in out[0]]
    for i, b in enumerate(out[1:], start=1):
        got = [(a.shape, a.dtype) for a in b]
        if got != first:
            raise ValueError(
                f"Expected every batch to have the shapes and dtypes of batch 0 "
                f"{[(s, str(d)) for s, d in first]}, got {[(s, str(d)) for s, d in got]} at "
                f"`batches[{i}]` (the jitted step is compiled for one shape; drop the ragged "
                "last batch)."
            )
    return out


def _losses(loss: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    if isinstance(loss, str):
        return S.named_loss(loss)
    if isinstance(loss, tuple | list) and len(loss) == 2 and all(callable(f) for f in loss):
        return loss[0], loss[1]
    raise TypeError(
        "Expected `loss` to be 'mse', 'cross_entropy' or a pair (jax_loss, torch_loss) of "
        f"functions (outputs, targets) -> scalar, got {type(loss).__name__}."
    )


def _build_tx(
    torch: Any, side: S.TorchSide, tx: Any, clip: float | None, steps: int
) -> tuple[Any, Any]:
    """``(tx, lr_fn)``: the optax transformation and, when built here, its lr per count."""
    if tx is not None:
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(
                f"Expected `tx` to be an optax.GradientTransformation or None, got "
                f"{type(tx).__name__}."
            )
        return tx, None
    try:
        built = _optim.optax_like(side.optimizer, side.scheduler)
    except NotImplementedError as e:
        raise NotImplementedError(
            f"`torch_optimizer` cannot be mapped to optax: {e} Pass `tx` yourself."
        ) from None
    group = side.optimizer.param_groups[0]
    len_hint = [steps]
    if side.scheduler is not None:
        sched = _optim._schedule(side.scheduler, float(side.scheduler.base_lrs[0]))
        table: dict[int, np.ndarray] = {}

        def lr_fn(k: int) -> float:  # the schedule for every count at once: one compile
            if not table:
                table[0] = np.asarray(jax.jit(jax.vmap(sched))(np.arange(len_hint[0])))
            return float(table[0][k]) if k < table[0].size else float(sched(jnp.asarray(k)))

    else:
        lr_fn = lambda k: float(group["lr"])
    if clip is not None:
        built = optax.chain(S.clip_grad_norm_like_torch(clip), built)
    return built, lr_fn


def _injected_lr(state: Any) -> float | None:
    """The learning rate of an ``optax.inject_hyperparams`` state, wherever it sits."""
    hyper = getattr(state, "hyperparams", None)
    if isinstance(hyper, dict) and "learning_rate" in hyper:
        return float(hyper["learning_rate"])
    if isinstance(state, dict):
        state = list(state.values())
    if isinstance(state, list | tuple):
        for node in state:
            lr = _injected_lr(node)
            if lr is not None:
                return lr
    return None


# ----------------------------------------------------------------------------- the JAX step


def _make_step(
    forward: Callable[..., Any],
    jax_loss: Callable[..., Any],
    tx: Any,
    opt_index: tuple[int, ...],
    forced: bool,
    traces: list[int],
) -> Callable[..., Any]:
    def loss_fn(theta: tuple, buffers: tuple, x: Any, y: Any) -> tuple[Any, tuple]:
        out, new_buffers = forward(theta, buffers, x)
        return jax_loss(out, y), new_buffers

    def step(theta: tuple, buffers: tuple, opt_state: Any, x: Any, y: Any, feed: tuple) -> Any:
        traces.append(1)
        (loss, new_buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(theta, buffers, x, y)
        source = feed if forced else grads
        updates, opt_state = tx.update(
            [source[i] for i in opt_index], opt_state, [theta[i] for i in opt_index]
        )
        new_theta = list(theta)
        for j, i in enumerate(opt_index):
            new_theta[i] = (theta[i] + updates[j]).astype(theta[i].dtype)
        return tuple(new_theta), new_buffers, opt_state, loss, grads

    return jax.jit(step)


# ----------------------------------------------------------------------------- comparison


def _worst(
    quantity: str,
    names: tuple[str, ...],
    jax_arrays: Iterable[Any],
    torch_arrays: Iterable[Any],
    rtol: float,
    atol: float,
    normwise: bool,
) -> tuple[float, str, float, str]:
    """``(max abs error, its name, max excess, name of the max excess)``.

    ``normwise``: the allowance of every element is ``atol + rtol max|torch tensor|``.
    """
    err, err_name, exc, exc_name = 0.0, "", 0.0, ""
    for n, a, b in zip(names, jax_arrays, torch_arrays, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        r, t = rtol, atol
        if normwise and b.size:
            scale = float(np.max(np.abs(b)))
            r, t = 0.0, atol + rtol * (scale if np.isfinite(scale) else 0.0)
        row = compare_arrays(quantity, n, a, b, r, t, check_dtype=False)
        e = float(row.max_abs_error)
        if not e <= err:  # also takes NaN/inf
            err, err_name = e, n
        x = float(row.excess)
        x = np.inf if x != x else x
        if not row.passed:
            x = max(x, float(np.nextafter(1.0, 2.0)))
        if not x <= exc:
            exc, exc_name = x, n
    return err, err_name, exc, exc_name


def compare_training(
    jax_model: Any,
    tx: Any,
    torch_module: Any,
    torch_optimizer: Any,
    batches: Iterable[Any],
    *,
    loss: Any,
    steps: int | None = None,
    scheduler: Any = None,
    clip_grad_norm: float | None = None,
    train: bool = True,
    teacher_forcing: bool = False,
    rtol: float | None = None,
    atol: float | None = None,
) -> TrainingParityResult:
    r"""Trains a JAX port and its torch model on the same batches and compares every step.

    Both sides start from torch's weights (loaded into a copy of the JAX model through the
    weight loader's layout rules; the user's models are not changed). The torch module,
    optimizer and scheduler are deep-copied together and the copies are stepped: the
    originals are left as they were. Each step, torch runs ``zero_grad``, forward, the loss,
    ``backward``, ``clip_grad_norm_`` (when asked), ``optimizer.step()`` and
    ``scheduler.step()``; JAX runs one jitted step: forward, ``value_and_grad``,
    ``tx.update`` on the optimizer's parameters (torch's order and shapes), the update.

    With ``teacher_forcing=True``, before every step the JAX parameters, buffers and
    optimizer state are set to torch's (the state of :func:`~funcdiff.parity.optax_like`'s
    transforms is known; other states are kept and said so in ``notes``), and the optimizer
    is fed torch's gradients: each step's error is then measured alone and split into
    forward (loss, running statistics given equal parameters), gradient (given equal
    parameters) and optimizer (update given equal gradients and state).

    Args:
      jax_model: a ``flax.nnx.Module``; an ``equinox.Module`` called as ``module(inputs)``;
        an Equinox ``(module, state)`` pair from ``eqx.nn.make_with_state`` (BatchNorm),
        called as ``module(inputs, state) -> (outputs, new_state)``, whose running
        statistics are compared with torch's buffers in train mode as for NNX; or a pair
        ``(apply_fn, params)``: ``apply_fn(params, inputs[, train=...])`` returning the
        outputs, or ``(outputs, new_params)`` when ``params`` holds running statistics.
        ``params`` keyed like torch's ``state_dict`` (flat dotted keys or nested dicts) is
        used as is; other pytrees go through ``load_torch_weights``.
      tx: the optax transformation of the port, applied to the list of the torch
        optimizer's parameters (group after group, torch's shapes); it must include any
        gradient clipping. None builds ``chain(clip_grad_norm_like_torch(clip_grad_norm),
        optax_like(torch_optimizer, scheduler))``.
      torch_module: the torch model (float32 or float64; the dtype of the run).
      torch_optimizer: a fresh ``torch.optim`` optimizer over ``torch_module``'s parameters.
      batches: iterable of ``(inputs, targets)`` arrays (NumPy, JAX or torch), all of one
        shape; float arrays are cast to the model's dtype.
      loss: ``"mse"``, ``"cross_entropy"`` (torch's definitions, mean reduction) or a pair
        ``(jax_loss, torch_loss)`` of functions ``(outputs, targets) -> scalar``.
      steps: number of steps (default: every batch).
      scheduler: an ``lr_scheduler`` attached to ``torch_optimizer``, stepped after every
        optimizer step; or None.
      clip_grad_norm: ``max_norm`` for ``torch.nn.utils.clip_grad_norm_`` over the
        optimizer's parameters, on the torch side (and in the ``tx`` built when ``tx`` is
        None).
      train: train mode (batch statistics, running statistics updated) or eval mode.
      teacher_forcing: reset the JAX side to torch's state before every step (see above).
      rtol: base relative tolerance (default per dtype: float64 ``1e-9``, float32 ``1e-4``),
        multiplied by :func:`envelope` at each step.
      atol: base absolute tolerance (default per dtype: float64 ``1e-12``, float32 ``1e-5``),
        multiplied by :func:`envelope` at each step.

    Returns:
      A :class:`TrainingParityResult`.

    Raises:
      TypeError: a model, optimizer, ``tx``, ``loss`` or batch of the wrong kind; an
        Equinox module with state given without its ``eqx.nn.State``; ``steps`` not an int.
      ValueError: ``steps`` below 1 or beyond the batches; batches of different shapes, or
        shapes a model rejects; a loss that is not a scalar; an optimizer whose parameters
        are not the module's; weights that do not load.
      NotImplementedError: a torch optimizer or scheduler ``optax_like`` cannot map (pass
        ``tx``).

    Examples:
      >>> import numpy as np, optax, torch
      >>> import jax.numpy as jnp
      >>> net = torch.nn.Linear(3, 1).double()
      >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
      >>> apply = lambda p, x: x @ p["weight"].T + p["bias"]
      >>> params = {"weight": np.zeros((1, 3)), "bias": np.zeros(1)}
      >>> rng = np.random.default_rng(0)
      >>> data = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(5)]
      >>> compare_training((apply, params), None, net, opt, data, loss="mse").ok
      True
    """
    torch = require_torch()
    tol = {k: _check_tolerance(k, v) for k, v in (("rtol", rtol), ("atol", atol))}
    if steps is not None:
        steps = check_int("steps", steps, minimum=1)
    if clip_grad_norm is not None:
        clip_grad_norm = check_positive_float("clip_grad_norm", clip_grad_norm)
    jax_loss, torch_loss = _losses(loss)
    side = S.copy_torch(torch, torch_module, torch_optimizer, scheduler)
    dtype = side.dtype
    d_rtol, d_atol = DEFAULT_TOLERANCES[dtype]
    r_tol = d_rtol if tol["rtol"] is None else tol["rtol"]
    a_tol = d_atol if tol["atol"] is None else tol["atol"]
    data = _batches(batches, steps, dtype)
    tx, lr_fn = _build_tx(torch, side, tx, clip_grad_norm, len(data))
    name = type(side.optimizer).__name__ + (
        "" if side.scheduler is None else f" + {type(side.scheduler).__name__}"
    )
    with (
        scoped(x64=dtype == "float64", matmul_precision="highest"),
        torch_precision(torch, float64=dtype == "float64"),
    ):
        return _run(
            jax_model,
            tx,
            side,
            data,
            jax_loss,
            torch_loss,
            lr_fn=lr_fn,
            clip=clip_grad_norm,
            train=train,
            forced=teacher_forcing,
            rtol=r_tol,
            atol=a_tol,
            name=name,
            torch=torch,
        )


def _torch_values(side: S.TorchSide) -> tuple[list[np.ndarray], list[np.ndarray]]:
    params = dict(side.module.named_parameters())
    buffers = dict(side.module.named_buffers())
    return (
        [params[n].detach().numpy().copy() for n in side.param_names],
        [buffers[n].detach().numpy().copy() for n in side.buffer_names],
    )


def _torch_opt_state(side: S.TorchSide) -> list[dict[str, np.ndarray]]:
    out = []
    for g in side.optimizer.param_groups:
        for p in g["params"]:
            st = side.optimizer.state.get(p, {})
            out.append(
                {
                    k: v.detach().numpy().copy()
                    for k, v in st.items()
                    if hasattr(v, "detach") and v.is_floating_point()
                }
            )
    return out


def _run(
    jax_model: Any,
    tx: Any,
    side: S.TorchSide,
    data: list[tuple[np.ndarray, np.ndarray]],
    jax_loss: Callable[..., Any],
    torch_loss: Callable[..., Any],
    *,
    lr_fn: Callable[[int], float] | None,
    clip: float | None,
    train: bool,
    forced: bool,
    rtol: float,
    atol: float,
    name: str,
    torch: Any,
) -> TrainingParityResult:
    jside = S.bind_jax_model(jax_model, side, train=train, torch=torch)
    notes = list(jside.notes)
    module, opt, sched = side.module, side.optimizer, side.scheduler
    module.train(train)
    named = dict(module.named_parameters())
    opt_params = [p for g in opt.param_groups for p in g["params"]]
    trainable = tuple(n for n in side.param_names if named[n].requires_grad)
    theta_np, buffers_np = _torch_values(side)
    theta = tuple(jax.device_put(a) for a in theta_np)
    buffers = tuple(jax.device_put(a) for a in buffers_np)
    x0, y0 = (jax.device_put(a) for a in data[0])
    # Boundary checks on the JAX side: shapes the model accepts, a scalar loss.
    try:
        out_shape = jax.eval_shape(lambda t, b, x: jside.forward(t, b, x)[0], theta, buffers, x0)
    except Exception as e:
        raise ValueError(
            f"`jax_model` rejects the inputs of `batches` (shape {tuple(x0.shape)}): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    loss_shape = jax.eval_shape(jax_loss, out_shape, jax.ShapeDtypeStruct(y0.shape, y0.dtype))
    if getattr(loss_shape, "shape", None) != ():
        raise ValueError(
            f"Expected the JAX loss of `loss` to return a scalar, got shape "
            f"{getattr(loss_shape, 'shape', type(loss_shape).__name__)}; reduce it (mean)."
        )
    opt_state = jax.jit(tx.init)([theta[i] for i in side.opt_index])
    traces: list[int] = []
    step_fn = _make_step(jside.forward, jax_loss, tx, side.opt_index, forced, traces)
    zeros = tuple(np.zeros(t.shape, t.dtype) for t in theta)

    rows: list[TrainingStep] = []
    t_torch = t_jax = 0.0
    first: tuple[int, str, str] | None = None
    for k, (xb, yb) in enumerate(data, start=1):
        # ---- torch
        tic = time.perf_counter()
        if forced:
            theta_np, buffers_np = _torch_values(side)
            t_state = _torch_opt_state(side)
        xt, yt = torch.from_numpy(xb), torch.from_numpy(yb)
        opt.zero_grad(set_to_none=True)
        try:
            out = module(xt)
        except Exception as e:
            raise ValueError(
                f"`torch_module` rejects the inputs of `batches[{k - 1}]` (shape {xb.shape}): "
                f"{type(e).__name__}: {e}"
            ) from None
        t_loss = torch_loss(out, yt)
        if not hasattr(t_loss, "numel") or t_loss.numel() != 1 or t_loss.dim() != 0:
            raise ValueError(
                "Expected the torch loss of `loss` to return a scalar tensor, got "
                f"{getattr(t_loss, 'shape', type(t_loss).__name__)}; reduce it (mean)."
            )
        t_loss.backward()
        t_grads = [
            np.zeros_like(theta_np[i]) if named[n].grad is None else named[n].grad.numpy().copy()
            for i, n in enumerate(side.param_names)
        ]
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(opt_params, clip)
        lr_t = float(opt.param_groups[0]["lr"])
        before = [named[n].detach().numpy().copy() for n in side.param_names]
        opt.step()
        if sched is not None:
            sched.step()
        after, buf_after = _torch_values(side)
        t_torch += time.perf_counter() - tic

        # ---- JAX
        tic = time.perf_counter()
        if forced:
            theta = tuple(jax.device_put(a) for a in before)
            buffers = tuple(jax.device_put(a) for a in buffers_np)
            opt_state, more = S.optax_state_from_torch(opt_state, t_state, k - 1)
            notes.extend(m for m in more if m not in notes)
            feed = tuple(jax.device_put(g) for g in t_grads)
        else:
            feed = zeros
        lr_j = lr_fn(k - 1) if lr_fn is not None else _injected_lr(opt_state)
        theta_before = theta
        theta, buffers, opt_state, j_loss, j_grads = step_fn(
            theta, buffers, opt_state, jax.device_put(xb), jax.device_put(yb), feed
        )
        jax.block_until_ready(theta)
        t_jax += time.perf_counter() - tic if k > 1 else 0.0
        if not np.all(np.isfinite(np.asarray(j_loss))) and np.isfinite(float(t_loss)):
            notes.append(f"the JAX loss is not finite at step {k}")

        # ---- compare
        env = envelope(side.dtype, k, teacher_forcing=forced)
        r, a = rtol * env, atol * env
        normwise = side.dtype != "float64"
        lt, lj = float(t_loss.detach()), float(j_loss)
        loss_row = compare_arrays(
            "loss", "loss", np.asarray(lj), np.asarray(lt), r, a, check_dtype=False
        )
        j_upd = [np.asarray(t) - np.asarray(b) for t, b in zip(theta, theta_before, strict=True)]
        t_upd = [p - q for p, q in zip(after, before, strict=True)]
        idx = [side.param_names.index(n) for n in trainable]
        g = _worst(
            "gradient",
            trainable,
            (j_grads[i] for i in idx),
            (t_grads[i] for i in idx),
            r,
            a,
            normwise,
        )
        u = _worst("update", side.param_names, j_upd, t_upd, r, a, normwise)
        p = _worst("parameter", side.param_names, theta, after, r, a, normwise)
        b = (
            _worst("buffer", side.buffer_names, buffers, buf_after, r, a, normwise)
            if side.buffer_names
            else (0.0, "", 0.0, "")
        )
        lr_exc = 0.0
        if lr_j is not None:
            lr_exc = abs(lr_j - lr_t) / (a + r * abs(lr_t)) if lr_j != lr_t else 0.0
        loss_exc = float(loss_row.excess) if loss_row.passed else max(float(loss_row.excess), 2.0)
        by_q = {
            "loss": (loss_exc, ""),
            "buffer": (b[2], b[3]),
            "gradient": (g[2], g[3]),
            "lr": (lr_exc, ""),
            "update": (u[2], u[3]),
            "parameter": (p[2], p[3]),
        }
        failed = tuple((q, by_q[q][1]) for q in QUANTITIES if not by_q[q][0] <= 1.0)
        rows.append(
            TrainingStep(
                step=k,
                lr=lr_t,
                lr_jax=lr_j,
                loss_torch=lt,
                loss_jax=lj,
                loss_error=abs(lj - lt) if np.isfinite(lj) else float("inf"),
                grad_error=g[0],
                grad_name=g[1],
                update_error=u[0],
                update_name=u[1],
                param_error=p[0],
                param_name=p[1],
                buffer_error=b[0],
                buffer_name=b[1],
                passed=not failed,
                failed=failed,
                excess=max((v[0] for v in by_q.values()), default=0.0),
            )
        )
        if failed and first is None:
            first = (k, failed[0][0], failed[0][1])
    return TrainingParityResult(
        steps=tuple(rows),
        dtype=side.dtype,
        rtol=rtol,
        atol=atol,
        teacher_forcing=forced,
        first_divergent_step=None if first is None else first[0],
        first_divergent_quantity=None if first is None else first[1],
        first_divergent_part=None if first is None else PART[first[1]],
        first_divergent_parameter=None if first is None or not first[2] else first[2],
        drift=R.drift_of(np.array([s.param_error for s in rows])),
        framework=jside.framework,
        optimizer=name,
        notes=tuple(notes),
        compiles=len(traces),
        torch_seconds=t_torch,
        jax_seconds=t_jax * len(rows) / max(len(rows) - 1, 1),
    )

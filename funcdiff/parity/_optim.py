r"""Optax transformations that follow a configured ``torch.optim`` optimizer step for step.

:func:`optax_like` reads a torch optimizer's param groups (and an attached scheduler) and
builds the optax chain that makes the same updates. :func:`compare_optimizers` runs both from
the same parameters and reports, step by step, how far apart the parameters are.

Parameter order: torch's parameters, group after group in ``optimizer.param_groups`` order,
are matched one to one with the leaves of the optax params pytree in ``jax.tree_util`` order
(``jax.tree_util.tree_leaves(params)``). The transformation checks the count and the shapes
when it is initialised.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcdiff import _report
from funcdiff._config import scoped
from funcdiff._validation import (
    UserFunctionError,
    call_user,
    check_callable,
    check_int,
    check_optional_callable,
    check_positive_float,
    user_function,
)
from funcdiff.parity import _transforms as T
from funcdiff.parity._torch import require_torch

__all__ = [
    "SUPPORTED_OPTIMIZERS",
    "SUPPORTED_SCHEDULERS",
    "OptimizerParityResult",
    "compare_optimizers",
    "optax_like",
]

SUPPORTED_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")
SUPPORTED_SCHEDULERS = ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR")

#: Most steps :func:`compare_optimizers` takes (it keeps every step's parameters).
MAX_STEPS = 1_000_000

#: Default tolerance of :func:`compare_optimizers` on the largest parameter difference.
DEFAULT_TOLERANCE = {"float64": 1e-10, "float32": 1e-4}

Schedule = Callable[[jax.Array], jax.Array]
LearningRate = float | Schedule


def _refuse_options(torch: Any, cls: str, group: dict[str, Any], index: int) -> None:
    for key, value in group.items():
        if key == "params":
            continue
        values = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(v, torch.Tensor) for v in values):
            raise NotImplementedError(
                f"{cls} option `{key}` is a tensor in param group {index}; optax_like only "
                f"reproduces plain Python numbers. Pass `{key}` as a float."
            )
    if group.get("differentiable", False):
        raise NotImplementedError(
            f"{cls} option `differentiable=True` is not supported by optax_like (JAX "
            "differentiates through optax updates on its own); construct the optimizer "
            "with differentiable=False."
        )


# ----------------------------------------------------------------------------- builders


def _maybe_maximize(group: dict[str, Any]) -> list[optax.GradientTransformation]:
    return [optax.scale(-1.0)] if group.get("maximize", False) else []


def _l2(weight_decay: float) -> list[optax.GradientTransformation]:
    return [optax.add_decayed_weights(weight_decay)] if weight_decay else []


def _sgd(group: dict[str, Any], lr: LearningRate) -> optax.GradientTransformation:
    parts = _maybe_maximize(group) + _l2(group["weight_decay"])
    momentum, dampening = group["momentum"], group["dampening"]
    if momentum:
        if dampening:
            parts.append(T.trace_torch(momentum, dampening, group["nesterov"]))
        else:
            parts.append(optax.trace(momentum, nesterov=group["nesterov"]))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def _adam(group: dict[str, Any], lr: LearningRate) -> optax.GradientTransformation:
    decoupled = bool(group.get("decoupled_weight_decay", False))
    b1, b2 = group["betas"]
    parts = _maybe_maximize(group)
    if not decoupled:
        parts += _l2(group["weight_decay"])
    if group["amsgrad"]:
        parts.append(T.scale_by_amsgrad_torch(b1, b2, group["eps"]))
    else:
        parts.append(optax.scale_by_adam(b1, b2, group["eps"]))
    if decoupled:
        # torch: p <- p (1 - lr wd), then the Adam step with the same (scheduled) lr.
        parts += _l2(group["weight_decay"])
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def _rmsprop(group: dict[str, Any], lr: LearningRate) -> optax.GradientTransformation:
    parts = _maybe_maximize(group) + _l2(group["weight_decay"])
    scale = optax.scale_by_stddev if group["centered"] else optax.scale_by_rms
    parts.append(scale(decay=group["alpha"], eps=group["eps"], eps_in_sqrt=False))
    if group["momentum"] > 0:
        # torch keeps the buffer before the learning rate, so a schedule scales it afterwards.
        parts.append(optax.trace(group["momentum"]))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def _adagrad(group: dict[str, Any], lr: LearningRate) -> optax.GradientTransformation:
    parts = _maybe_maximize(group) + _l2(group["weight_decay"])
    parts.append(T.scale_by_adagrad_torch(group["initial_accumulator_value"], group["eps"]))
    if group["lr_decay"]:
        lr = T.adagrad_lr_decay(lr, group["lr_decay"])
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


_BUILDERS = {"SGD": _sgd, "Adam": _adam, "AdamW": _adam, "RMSprop": _rmsprop, "Adagrad": _adagrad}


def _schedule(scheduler: Any, base_lr: float) -> Schedule:
    name = type(scheduler).__name__
    if name == "StepLR":
        return T.step_schedule(base_lr, scheduler.step_size, scheduler.gamma)
    if name == "MultiStepLR":
        return T.multistep_schedule(base_lr, scheduler.milestones.elements(), scheduler.gamma)
    if name == "ExponentialLR":
        return T.exponential_schedule(base_lr, scheduler.gamma)
    if name == "CosineAnnealingLR":
        return T.cosine_annealing_schedule(base_lr, scheduler.T_max, scheduler.eta_min)
    return T.linear_schedule(  # LinearLR
        base_lr, scheduler.start_factor, scheduler.end_factor, scheduler.total_iters
    )


def _check_scheduler(torch: Any, optimizer: Any, scheduler: Any) -> None:
    if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        raise TypeError(
            "Expected `scheduler` to be a torch.optim.lr_scheduler.LRScheduler or None, got "
            f"{type(scheduler).__name__}."
        )
    classes = tuple(getattr(torch.optim.lr_scheduler, n) for n in SUPPORTED_SCHEDULERS)
    if type(scheduler) not in classes:
        raise NotImplementedError(
            f"optax_like does not support the scheduler {type(scheduler).__name__}; supported: "
            f"{', '.join(SUPPORTED_SCHEDULERS)}."
        )
    if getattr(scheduler, "optimizer", None) is not optimizer:
        raise ValueError(
            f"Expected `scheduler` to be attached to `torch_optimizer`, but this "
            f"{type(scheduler).__name__} was built for another optimizer. Build it as "
            f"{type(scheduler).__name__}(torch_optimizer, ...)."
        )
    if scheduler.last_epoch != 0:
        raise NotImplementedError(
            f"optax_like needs a fresh scheduler (`last_epoch=0`), got last_epoch="
            f"{scheduler.last_epoch}; build the optax transform before training starts."
        )


def _per_epoch(schedule: Schedule, steps_per_epoch: int) -> Schedule:
    if steps_per_epoch == 1:
        return schedule
    return lambda count: schedule(jnp.asarray(count) // steps_per_epoch)


def _with_size_check(
    tx: optax.GradientTransformation, shapes: list[tuple[int, ...]], cls: str
) -> optax.GradientTransformation:
    # Every supported rule is elementwise, so a leaf only has to hold as many numbers as its
    # torch parameter: a torch (1,) may be a JAX scalar (funcdiff.regression.fit's params).
    sizes = [math.prod(s) for s in shapes]

    def init_fn(params: Any) -> Any:
        got = [tuple(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)]
        if [math.prod(s) for s in got] != sizes:
            raise ValueError(
                f"Expected `params` with {len(shapes)} leaves of shapes {shapes} (the torch "
                f"{cls}'s parameters, group after group), got {len(got)} leaves of shapes "
                f"{got}. Leaves are matched in jax.tree_util order and must have the same "
                "number of elements."
            )
        return tx.init(params)

    return optax.GradientTransformation(init_fn, tx.update)


def _has_stepped(state: dict[str, Any]) -> bool:
    if "step" in state:  # Adam, AdamW, RMSprop, Adagrad (Adagrad fills its state at once)
        return float(state["step"]) > 0
    return any(v is not None for v in state.values())  # SGD's momentum_buffer


def optax_like(
    torch_optimizer: Any, scheduler: Any = None, *, steps_per_epoch: int = 1
) -> optax.GradientTransformation:
    r"""The optax transformation that makes the same updates as a ``torch.optim`` optimizer.

    Reads the hyperparameters of every param group (and the scheduler's), and chains optax
    building blocks (plus the few in :mod:`funcdiff.parity._transforms`) into one
    transformation. Torch's parameters, in ``param_groups`` order, correspond to the leaves
    of the optax params pytree in ``jax.tree_util`` order; several param groups become an
    ``optax.multi_transform`` over those leaves.

    Supported: ``SGD`` (lr, momentum, dampening, nesterov, weight_decay, maximize), ``Adam``
    (betas, eps, L2 weight_decay, torch's amsgrad, maximize), ``AdamW`` (decoupled decay with
    the scheduled lr), ``RMSprop`` (alpha, eps outside the root, centered, momentum,
    weight_decay), ``Adagrad`` (lr_decay, initial_accumulator_value, eps outside the root,
    weight_decay); schedulers ``StepLR``, ``MultiStepLR``, ``ExponentialLR``,
    ``CosineAnnealingLR`` (also past ``T_max``) and ``LinearLR``. ``foreach``, ``fused`` and
    ``capturable`` change only rounding and are accepted.

    Args:
      torch_optimizer: a fresh (not yet stepped) ``torch.optim`` optimizer.
      scheduler: an ``lr_scheduler`` attached to ``torch_optimizer``, stepped once after
        every ``optimizer.step()``; or None for constant learning rates.
      steps_per_epoch: for a scheduler stepped once per epoch of ``steps_per_epoch``
        optimizer steps: the optax schedule then reads ``count // steps_per_epoch``.

    Returns:
      An ``optax.GradientTransformation``. Its ``init`` checks that the params pytree has
      as many leaves as torch has parameters, each with the same number of elements (a
      torch ``(1,)`` may be a JAX scalar).

    Raises:
      TypeError: ``torch_optimizer`` is not a torch optimizer, or ``scheduler`` not a scheduler.
      NotImplementedError: an unsupported optimizer or scheduler class, or an option that
        cannot be reproduced (``differentiable=True``, a tensor ``lr``, a stepped optimizer).
      ValueError: ``scheduler`` is attached to another optimizer.

    Examples:
      >>> import torch
      >>> import jax.numpy as jnp
      >>> import optax
      >>> w = torch.nn.Parameter(torch.ones(2))
      >>> tx = optax_like(torch.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.5))
      >>> state = tx.init(jnp.ones(2))
      >>> updates, state = tx.update(jnp.ones(2), state)
      >>> print(updates)
      [-0.1 -0.1]
    """
    torch = require_torch()
    if not isinstance(torch_optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"Expected `torch_optimizer` to be a torch.optim.Optimizer, got "
            f"{type(torch_optimizer).__name__}."
        )
    cls = type(torch_optimizer).__name__
    if cls not in SUPPORTED_OPTIMIZERS or type(torch_optimizer) is not getattr(torch.optim, cls):
        raise NotImplementedError(
            f"optax_like does not support the optimizer {type(torch_optimizer).__qualname__}; "
            f"supported: {', '.join('torch.optim.' + n for n in SUPPORTED_OPTIMIZERS)}."
        )
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch)
    if any(_has_stepped(s) for s in torch_optimizer.state.values()):
        raise NotImplementedError(
            f"optax_like needs a fresh {cls} whose state is empty; this one has already "
            "stepped (optimizer state cannot be transferred). Build the transform first."
        )
    groups = torch_optimizer.param_groups
    if scheduler is not None:
        _check_scheduler(torch, torch_optimizer, scheduler)
        base_lrs = list(scheduler.base_lrs)
    else:
        base_lrs = [g["lr"] for g in groups]
    txs = []
    for i, (group, base_lr) in enumerate(zip(groups, base_lrs, strict=True)):
        _refuse_options(torch, cls, group, i)
        lr: LearningRate = float(base_lr)
        if scheduler is not None:
            lr = _per_epoch(_schedule(scheduler, float(base_lr)), steps_per_epoch)
        txs.append(_BUILDERS[cls](group, lr))
    shapes = [tuple(p.shape) for g in groups for p in g["params"]]
    if len(txs) == 1:
        return _with_size_check(txs[0], shapes, cls)
    labels = [f"group{i}" for i, g in enumerate(groups) for _ in g["params"]]

    def param_labels(params: Any) -> Any:
        treedef = jax.tree_util.tree_structure(params)
        return jax.tree_util.tree_unflatten(treedef, labels)

    tx = optax.multi_transform({f"group{i}": t for i, t in enumerate(txs)}, param_labels)
    return _with_size_check(tx, shapes, cls)


# ----------------------------------------------------------------------------- comparison


@dataclasses.dataclass(frozen=True)
class OptimizerParityResult:
    """How closely the optax transformation followed the torch optimizer, step by step.

    Attributes:
      optimizer: the torch optimizer's class (and scheduler's), e.g. ``"SGD + StepLR"``.
      steps: number of optimizer steps taken.
      dtype: the parameters' dtype (``"float64"`` or ``"float32"``).
      tolerance: largest allowed parameter difference.
      param_diff: ``(steps,)`` largest ``|θ_torch - θ_jax|`` over all leaves after each step.
      first_bad_step: first step (1-based) whose difference exceeds ``tolerance`` or is not
        finite; None when none does.
      torch_losses: ``(steps,)`` torch loss at each step's starting parameters.
      jax_losses: ``(steps,)`` the same on the JAX side.
      torch_params: final torch parameters, as a pytree like ``params`` of NumPy arrays.
      jax_params: final JAX parameters.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, torch
      >>> from funcdiff.parity import compare_optimizers
      >>> planted = lambda w: (w**2).sum() + 0.01 * w.sum()  # not the JAX loss
      >>> result = compare_optimizers(
      ...     lambda ps: torch.optim.SGD(ps, lr=0.1), lambda w: jnp.sum(w**2), planted,
      ...     np.array([1.0, -2.0]), steps=10,
      ... )
      >>> result.ok, result.first_bad_step, result.param_diff.shape, round(result.max_diff, 4)
      (False, 1, (10,), 0.0045)
      >>> str(result).splitlines()[0]
      'SGD vs optax, 10 steps in float64: max |Δθ| 0.0045 (tolerance 1.000e-10), FAILED from step 1'
    """

    optimizer: str
    steps: int
    dtype: str
    tolerance: float
    param_diff: np.ndarray
    first_bad_step: int | None
    torch_losses: np.ndarray
    jax_losses: np.ndarray
    torch_params: Any
    jax_params: Any

    @property
    def ok(self) -> bool:
        """Whether every step stayed within ``tolerance``."""
        return self.first_bad_step is None

    @property
    def max_diff(self) -> float:
        """Largest parameter difference over all steps (NaN if any step was not finite)."""
        return float(np.max(self.param_diff)) if self.param_diff.size else 0.0

    def __str__(self) -> str:
        n = self.steps
        picks = sorted({1, *(max(1, round(n * f)) for f in (0.25, 0.5, 0.75)), n})
        if self.first_bad_step is not None:
            picks = sorted({*picks, self.first_bad_step})
        rows = [
            [
                k,
                self.torch_losses[k - 1],
                self.jax_losses[k - 1],
                self.param_diff[k - 1],
                bool(self.param_diff[k - 1] <= self.tolerance),
            ]
            for k in picks
        ]
        verdict = "ok" if self.ok else f"FAILED from step {self.first_bad_step}"
        title = (
            f"{self.optimizer} vs optax, {n} steps in {self.dtype}: max |Δθ| "
            f"{_report.fmt(self.max_diff)} (tolerance {_report.fmt(self.tolerance)}), {verdict}"
        )
        headers = ["step", "torch loss", "jax loss", "max |Δθ|", "ok"]
        return _report.table(headers, rows, title=title, digits=6)


def _as_numpy_leaves(params: Any) -> tuple[list[np.ndarray], Any]:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if not leaves:
        raise ValueError("Expected `params` to hold at least one array, got an empty pytree.")
    out = []
    for leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype not in (np.float32, np.float64):
            raise TypeError(
                f"Expected `params` leaves of dtype float32 or float64, got {arr.dtype}. "
                "Cast them, e.g. np.asarray(x, np.float64)."
            )
        out.append(arr)
    if len({a.dtype for a in out}) > 1:
        raise TypeError("Expected all `params` leaves to share one dtype, got a mix.")
    if not any(a.size for a in out):
        raise ValueError(
            f"Expected `params` to hold at least one number, got only empty arrays "
            f"{[a.shape for a in out]}; there is nothing to optimise."
        )
    return out, treedef


def _run_jax(
    tx: optax.GradientTransformation, jax_loss: Callable[..., Any], p0: Any, steps: int
) -> tuple[Any, jax.Array]:
    def step(carry: Any, _: Any) -> tuple[Any, tuple[Any, jax.Array]]:
        params, state = carry
        loss, grads = jax.value_and_grad(lambda p: call_user("jax_loss", jax_loss, p))(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, loss)

    @jax.jit
    def run(params: Any) -> tuple[Any, jax.Array]:
        _, (trajectory, losses) = jax.lax.scan(step, (params, tx.init(params)), length=steps)
        return trajectory, losses

    return run(p0)


def _check_torch_loss(torch: Any, loss: Any) -> None:
    """The torch loss must be a one-element tensor attached to the graph (``backward`` needs it)."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = (
            f"a tensor of shape {tuple(loss.shape)}"
            if isinstance(loss, torch.Tensor)
            else type(loss).__name__
        )
        raise UserFunctionError(
            f"Expected the function passed as `torch_loss` to return a scalar torch.Tensor "
            f"computed from its argument, got {got}; compute it with torch operations on the "
            "tensors it is given (no .item(), NumPy or Python floats).",
            argument="torch_loss",
        )


def compare_optimizers(
    make_torch_optimizer: Callable[[list[Any]], Any],
    jax_loss: Callable[[Any], jax.Array],
    torch_loss: Callable[[Any], Any],
    params: Any,
    *,
    steps: int = 100,
    scheduler: Callable[[Any], Any] | None = None,
    tolerance: float | None = None,
) -> OptimizerParityResult:
    r"""Runs a torch optimizer and :func:`optax_like` of it from the same parameters.

    The torch side makes one tensor per leaf of ``params`` (``jax.tree_util`` order), hands the
    list to ``make_torch_optimizer``, and takes ``steps`` steps of ``zero_grad``, ``backward``
    of ``torch_loss``, ``optimizer.step()`` and ``scheduler.step()``. The JAX side runs
    ``optax_like(optimizer, scheduler)`` on ``jax_loss`` as one jitted ``lax.scan``. Float64
    params run under ``scoped(x64=True)``.

    Args:
      make_torch_optimizer: ``list of torch tensors -> torch.optim.Optimizer``; split the
        list into param groups here if you want several. Pass ``foreach=False`` for the
        tightest agreement.
      jax_loss: ``params -> scalar``, differentiated with ``jax.grad``.
      torch_loss: the same loss on a pytree like ``params`` with torch tensors as leaves.
      params: the starting parameters: one array or a pytree of float32 or float64 arrays.
      steps: optimizer steps, >= 1.
      scheduler: ``optimizer -> lr_scheduler`` (e.g. ``lambda o: StepLR(o, 10)``), or None.
      tolerance: largest allowed ``|Δθ|``; default 1e-10 in float64 and 1e-4 in float32.

    Returns:
      An :class:`OptimizerParityResult`; ``.ok`` and ``.first_bad_step`` say whether and
      where the trajectories separated.

    Raises:
      TypeError: ``params`` leaves are not float32/float64, a function argument is not
        callable, or ``make_torch_optimizer`` did not return an optimizer.
      ValueError: ``params`` empty, ``steps`` not in 1 .. 1_000_000; as :func:`optax_like`.
      NotImplementedError: as :func:`optax_like`.
      UserFunctionError: ``make_torch_optimizer``, ``scheduler``, ``jax_loss`` or
        ``torch_loss`` raised, is not jit-compatible (``jax_loss``), or ``torch_loss`` did
        not return a scalar tensor.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, torch
      >>> from funcdiff.parity import compare_optimizers
      >>> result = compare_optimizers(
      ...     lambda ps: torch.optim.Adam(ps, lr=0.1, foreach=False),
      ...     lambda w: jnp.sum(w**2),
      ...     lambda w: (w**2).sum(),
      ...     np.array([1.0, -2.0]),
      ...     steps=20,
      ... )
      >>> result.ok, result.optimizer, result.dtype, result.max_diff < 1e-10
      (True, 'Adam', 'float64', True)
      >>> [round(float(v), 4) for v in result.jax_params]
      [-0.2712, -0.2225]
    """
    torch = require_torch()
    check_callable("make_torch_optimizer", make_torch_optimizer)
    check_callable("jax_loss", jax_loss)
    check_callable("torch_loss", torch_loss)
    check_optional_callable("scheduler", scheduler)
    steps = check_int("steps", steps, maximum=MAX_STEPS, why="every step's parameters are kept")
    leaves, treedef = _as_numpy_leaves(params)
    dtype = str(leaves[0].dtype)
    tol = (
        DEFAULT_TOLERANCE[dtype]
        if tolerance is None
        else check_positive_float("tolerance", tolerance)
    )
    tensors = [torch.tensor(a.copy(), requires_grad=True) for a in leaves]
    with user_function("make_torch_optimizer"):
        optimizer = make_torch_optimizer(tensors)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"Expected `make_torch_optimizer` to return a torch.optim.Optimizer, got "
            f"{type(optimizer).__name__}."
        )
    sched = None
    if scheduler is not None:
        with user_function("scheduler"):
            sched = scheduler(optimizer)
    tx = optax_like(optimizer, sched)
    name = type(optimizer).__name__ + ("" if sched is None else f" + {type(sched).__name__}")

    torch_traj = np.empty((steps, len(leaves)), dtype=object)
    torch_losses = np.empty(steps, dtype=leaves[0].dtype)
    tree = jax.tree_util.tree_unflatten(treedef, tensors)
    for k in range(steps):
        optimizer.zero_grad()
        with user_function("torch_loss"):
            loss = torch_loss(tree)
        _check_torch_loss(torch, loss)
        with user_function("torch_loss"):
            loss.backward()
        optimizer.step()
        if sched is not None:
            sched.step()
        torch_losses[k] = float(loss.detach())
        for j, t in enumerate(tensors):
            torch_traj[k, j] = t.detach().numpy().copy()

    with scoped(x64=dtype == "float64"):
        p0 = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])
        trajectory, jax_losses = _run_jax(tx, jax_loss, p0, steps)
        jax_traj = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(trajectory)]
        jax_losses_np = np.asarray(jax_losses)

    diff = np.zeros(steps)
    for j, jt in enumerate(jax_traj):
        tt = np.stack(list(torch_traj[:, j])).reshape(jt.shape)
        with np.errstate(invalid="ignore"):  # inf - inf: counted as a failure below
            d = np.abs(tt.astype(np.float64) - jt.astype(np.float64)).reshape(steps, -1)
        if d.shape[1]:
            diff = np.maximum(diff, np.where(np.isnan(d), np.inf, d).max(axis=1))
    bad = np.flatnonzero(~(diff <= tol) | ~np.isfinite(jax_losses_np))
    return OptimizerParityResult(
        optimizer=name,
        steps=steps,
        dtype=dtype,
        tolerance=tol,
        param_diff=diff,
        first_bad_step=int(bad[0]) + 1 if bad.size else None,
        torch_losses=torch_losses,
        jax_losses=jax_losses_np,
        torch_params=jax.tree_util.tree_unflatten(treedef, list(torch_traj[-1])),
        jax_params=jax.tree_util.tree_unflatten(treedef, [t[-1] for t in jax_traj]),
    )

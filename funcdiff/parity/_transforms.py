r"""Small optax pieces that stock optax lacks, each following one ``torch.optim`` rule exactly.

Stock optax already matches most of ``torch.optim`` (see ``docs/optimizers.md``); these fill the
gaps, and :func:`funcdiff.parity.optax_like` chains them with optax's own building blocks.
They do not need PyTorch.

* :func:`trace_torch`: SGD's momentum buffer with ``dampening`` (torch copies the first
  gradient undampened: :math:`b_1 = g_1`, then :math:`b_t = \mu b_{t-1} + (1-\tau) g_t`).
* :func:`scale_by_amsgrad_torch`: Adam's AMSGrad as torch does it (max over the *raw* second
  moment, bias-corrected afterwards; ``optax.scale_by_amsgrad`` maxes the corrected one).
* :func:`scale_by_adagrad_torch`: Adagrad with ``eps`` outside the square root and torch's
  initial accumulator (optax puts ``eps`` inside).
* :func:`cosine_annealing_schedule`: ``CosineAnnealingLR``, which keeps following the cosine
  past ``T_max`` (period ``2 T_max``); ``optax.cosine_decay_schedule`` stays flat there.
* :func:`step_schedule`, :func:`multistep_schedule`, :func:`exponential_schedule`,
  :func:`linear_schedule`: ``StepLR``, ``MultiStepLR`` (repeated milestones count twice),
  ``ExponentialLR``, ``LinearLR`` in closed form. optax's ``exponential_decay`` and
  ``linear_schedule`` compute the same values, but divide the int32 step count in float32,
  which costs about 1e-8 relative even under x64; these cast the count to the default float
  dtype first.
* :func:`adagrad_lr_decay`: Adagrad's ``lr / (1 + t lr_decay)`` on top of any schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "AdagradTorchState",
    "AmsgradTorchState",
    "TraceTorchState",
    "adagrad_lr_decay",
    "cosine_annealing_schedule",
    "exponential_schedule",
    "linear_schedule",
    "multistep_schedule",
    "scale_by_adagrad_torch",
    "scale_by_amsgrad_torch",
    "step_schedule",
    "trace_torch",
]

Schedule = Callable[[jax.Array], jax.Array]


class TraceTorchState(NamedTuple):
    """State of :func:`trace_torch`: the step count ``step`` and the momentum buffer."""

    step: jax.Array
    trace: Any


def trace_torch(
    momentum: float, dampening: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    r"""SGD's momentum buffer as ``torch.optim.SGD`` keeps it, dampening included.

    .. math::
       b_1 = g_1, \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, g_t, \qquad
       u_t = g_t + \mu b_t \ \text{(nesterov)} \ \text{or}\ b_t.

    With ``dampening=0`` this is ``optax.trace(momentum, nesterov)``.

    Args:
      momentum: :math:`\mu`.
      dampening: :math:`\tau`; torch skips it on the first step.
      nesterov: return :math:`g_t + \mu b_t` instead of :math:`b_t`.

    Returns:
      An optax ``GradientTransformation``; chain ``scale_by_learning_rate`` after it.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = trace_torch(0.9, dampening=0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.ones(1), state)
      >>> u, state = tx.update(jnp.ones(1), state)
      >>> print(u)  # 0.9 * 1 + 0.5 * 1
      [1.4]
    """

    def init_fn(params: Any) -> TraceTorchState:
        return TraceTorchState(
            step=jnp.zeros([], jnp.int32), trace=jax.tree.map(jnp.zeros_like, params)
        )

    def update_fn(updates: Any, state: TraceTorchState, params: Any = None) -> tuple[Any, Any]:
        del params
        first = state.step == 0
        new_trace = jax.tree.map(
            lambda g, b: jnp.where(first, g, momentum * b + (1 - dampening) * g),
            updates,
            state.trace,
        )
        if nesterov:
            out = jax.tree.map(lambda g, b: g + momentum * b, updates, new_trace)
        else:
            out = new_trace
        count = optax.safe_increment(state.step)
        return out, TraceTorchState(step=count, trace=new_trace)

    return optax.GradientTransformation(init_fn, update_fn)


class AmsgradTorchState(NamedTuple):
    """State of :func:`scale_by_amsgrad_torch`: step count and the three moments."""

    step: jax.Array
    mu: Any
    nu: Any
    nu_max: Any


def scale_by_amsgrad_torch(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    r"""Adam with AMSGrad as ``torch.optim.Adam(amsgrad=True)`` computes it.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
       v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
       \hat v_t = \max(\hat v_{t-1}, v_t),\\
       u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}.

    torch keeps the running maximum of the raw :math:`v_t` and bias-corrects it afterwards;
    ``optax.scale_by_amsgrad`` keeps the maximum of the corrected one, which differs
    whenever :math:`v_t` shrinks.

    Args:
      b1: :math:`\beta_1`.
      b2: :math:`\beta_2`.
      eps: :math:`\epsilon`, added outside the square root.

    Returns:
      An optax ``GradientTransformation``; chain ``scale_by_learning_rate`` after it.
    """

    def init_fn(params: Any) -> AmsgradTorchState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AmsgradTorchState(jnp.zeros([], jnp.int32), zeros, zeros, zeros)

    def update_fn(updates: Any, state: AmsgradTorchState, params: Any = None) -> tuple[Any, Any]:
        del params
        mu = jax.tree.map(lambda g, m: m + (1 - b1) * (g - m), updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        count = optax.safe_increment(state.step)
        bc1 = 1 - b1 ** count.astype(jnp.result_type(float))
        bc2_sqrt = jnp.sqrt(1 - b2 ** count.astype(jnp.result_type(float)))
        out = jax.tree.map(
            lambda m, v: (m / (jnp.sqrt(v) / bc2_sqrt.astype(v.dtype) + eps)) / bc1.astype(m.dtype),
            mu,
            nu_max,
        )
        return out, AmsgradTorchState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


class AdagradTorchState(NamedTuple):
    """State of :func:`scale_by_adagrad_torch`: the running sum of squared gradients."""

    sum_of_squares: Any


def scale_by_adagrad_torch(
    initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> optax.GradientTransformation:
    r"""Adagrad's scaling as ``torch.optim.Adagrad`` applies it: ``eps`` outside the root.

    .. math::
       s_t = s_{t-1} + g_t^2,\ s_0 = \text{initial\_accumulator\_value},\qquad
       u_t = g_t / (\sqrt{s_t} + \epsilon).

    ``optax.scale_by_rss`` uses :math:`g_t / \sqrt{s_t + \epsilon}` (and a different
    default initial accumulator), which drifts from torch when ``eps`` is not tiny.

    Args:
      initial_accumulator_value: :math:`s_0` (torch default 0; optax's ``adagrad`` uses 0.1).
      eps: :math:`\epsilon` (torch default 1e-10).

    Returns:
      An optax ``GradientTransformation``; chain ``scale_by_learning_rate`` after it.
    """

    def init_fn(params: Any) -> AdagradTorchState:
        return AdagradTorchState(
            jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        )

    def update_fn(updates: Any, state: AdagradTorchState, params: Any = None) -> tuple[Any, Any]:
        del params
        s = jax.tree.map(lambda g, a: a + g * g, updates, state.sum_of_squares)
        out = jax.tree.map(lambda g, a: g / (jnp.sqrt(a) + eps), updates, s)
        return out, AdagradTorchState(s)

    return optax.GradientTransformation(init_fn, update_fn)


def cosine_annealing_schedule(base_lr: float, t_max: int, eta_min: float = 0.0) -> Schedule:
    r"""``torch.optim.lr_scheduler.CosineAnnealingLR`` as an optax schedule, past ``T_max`` too.

    .. math:: \eta_t = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi t / T_{max})}{2}

    for every step :math:`t`: after ``T_max`` the rate climbs back to ``base_lr`` at
    ``2 T_max``, as torch's scheduler does (``optax.cosine_decay_schedule`` stays at
    ``eta_min``). Up to ``T_max`` the two agree.

    Examples:
      >>> sched = cosine_annealing_schedule(0.1, 10)
      >>> print(float(sched(10)), round(float(sched(20)), 6))
      0.0 0.1
    """
    if t_max < 1:
        raise ValueError(f"Expected `t_max` to be an integer >= 1, got {t_max!r}.")

    def schedule(count: jax.Array) -> jax.Array:
        t = _float_count(count)
        return eta_min + (base_lr - eta_min) * (1 + jnp.cos(math.pi * t / t_max)) / 2

    return schedule


def _float_count(count: jax.Array) -> jax.Array:
    return jnp.asarray(count).astype(jnp.result_type(float))


def step_schedule(base_lr: float, step_size: int, gamma: float) -> Schedule:
    r"""``StepLR``: :math:`\eta_t = \eta_0 \gamma^{\lfloor t / \text{step\_size} \rfloor}`."""

    def schedule(count: jax.Array) -> jax.Array:
        k = jnp.asarray(count) // step_size
        return base_lr * gamma ** _float_count(k)

    return schedule


def exponential_schedule(base_lr: float, gamma: float) -> Schedule:
    r"""``ExponentialLR``: :math:`\eta_t = \eta_0 \gamma^t`."""
    return lambda count: base_lr * gamma ** _float_count(count)


def linear_schedule(
    base_lr: float, start_factor: float, end_factor: float, total_iters: int
) -> Schedule:
    r"""``LinearLR``: the factor goes linearly from ``start_factor`` to ``end_factor``.

    .. math:: \eta_t = \eta_0 \left(s + (e - s) \frac{\min(t, T)}{T}\right)
    """

    def schedule(count: jax.Array) -> jax.Array:
        t = jnp.minimum(_float_count(count), total_iters)
        return base_lr * (start_factor + (end_factor - start_factor) * t / total_iters)

    return schedule


def multistep_schedule(base_lr: float, milestones: Iterable[int], gamma: float) -> Schedule:
    r"""``MultiStepLR``: :math:`\eta_t = \eta_0 \gamma^{\#\{m \le t\}}`, repeats counted twice."""
    ms = jnp.asarray(sorted(int(m) for m in milestones) or [2**31 - 1], dtype=jnp.int32)

    def schedule(count: jax.Array) -> jax.Array:
        k = jnp.sum(jnp.asarray(count) >= ms)
        return base_lr * gamma ** _float_count(k)

    return schedule


def adagrad_lr_decay(schedule: Schedule | float, lr_decay: float) -> Schedule:
    r"""Adagrad's step size :math:`\eta_t / (1 + t\,\text{lr\_decay})` on top of a schedule."""

    def decayed(count: jax.Array) -> jax.Array:
        lr = schedule(count) if callable(schedule) else schedule
        return lr / (1 + _float_count(count) * lr_decay)

    return decayed

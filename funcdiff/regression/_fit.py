r"""``fit``: a linear model trained by any optax optimizer in ONE jitted ``lax.scan``.

The model is :math:`\hat y = b_0 + x\,b` (``x`` of shape (n,) or (n, p)) and the default loss
the mean squared error. Each epoch of the scan evaluates the loss and its gradient at the
epoch's starting parameters (``jax.value_and_grad``), records the loss, logs the gradient every
``log_every`` epochs, and applies the optimizer's update. Divergence, the log, the NaN check on
the data and the last finite parameters are all tracked inside the same program, so one call is
one dispatch plus one small device-to-host read.

Compiled programs are cached per (optimizer object, loss callable, epochs, log_every,
batch_size, method, sharded or not); ``jax.jit`` then caches per shape and dtype. Reuse the
same optimizer object to avoid recompiling: ``optax.sgd(0.1)`` built twice is two different
functions to JAX.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec
from jax.typing import ArrayLike

from funcdiff._validation import call_user, check_bool, check_choice, is_prng_key, short
from funcdiff.regression import _data
from funcdiff.regression._result import DIVERGED, OK, FitLog, FitResult

__all__ = ["DivergenceError", "fit", "mse", "predict"]

_HIGHEST = lax.Precision.HIGHEST
_DEFAULT_OPTIMIZER = optax.sgd(0.1)
_METHODS = ("autodiff", "gram")


class DivergenceError(FloatingPointError, ValueError):
    """The loss became NaN or inf during :func:`fit` (raised when ``throw=True``).

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import DivergenceError, fit
      >>> x, y = seed.regression_data(jax.random.key(0), 100)
      >>> try:  # inputs 10x larger: sgd(0.1), the default, steps too far
      ...     fit(10 * x, y, epochs=500)
      ... except DivergenceError as e:
      ...     print(e)
      The loss diverged (became NaN or inf) at epoch 13. Try a smaller learning rate, ...
    """


def _numeric(name: str, a: Any) -> jax.Array:
    """``a`` as a JAX array of real numbers, or a TypeError naming ``name``."""
    try:
        if isinstance(a, str | bytes):  # jnp.asarray would read a string as a dtype name
            raise TypeError
        arr = jnp.asarray(a)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(
            f"Expected `{name}` to be an array of numbers JAX can hold, got "
            f"{type(a).__name__} {short(a, width=60)}."
        ) from None
    if is_prng_key(arr):
        raise TypeError(f"Expected `{name}` to hold real numbers, got a PRNG key.")
    if arr.dtype == jnp.bool_ or jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"Expected `{name}` to hold real numbers, got dtype {arr.dtype}.")
    return arr


def mse(pred: ArrayLike, y: ArrayLike) -> jax.Array:
    """Mean squared error, the tutorial's ``mean((y - pred)**2)``.

    Args:
      pred: predictions, any shape.
      y: targets of the same shape (not broadcast: (3, 1) against (3,) would silently average
        a 3 x 3 matrix of differences).

    Raises:
      TypeError: not arrays of real numbers.
      ValueError: ``pred`` and ``y`` of different shapes.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
      2.0
    """
    pred, y = _numeric("pred", pred), _numeric("y", y)
    if pred.shape != y.shape:
        hint = " Flatten the predictions with pred.ravel()." if pred.size == y.size else ""
        raise ValueError(
            f"Expected `pred` and `y` of the same shape, got {pred.shape} and {y.shape} "
            f"(mse does not broadcast).{hint}"
        )
    return jnp.mean((y - pred) ** 2)


def predict(params: Mapping[str, ArrayLike], x: ArrayLike) -> jax.Array:
    """The linear model ``intercept + x * coef`` (1-D ``x``) or ``intercept + x @ coef``.

    Args:
      params: ``{"intercept": shape (), "coef": shape () or (p,)}`` (e.g. ``fit(...).params``).
      x: inputs: any shape with a scalar ``coef``; last axis of size ``p`` with ``coef`` (p,).

    Raises:
      TypeError: ``params`` is not a mapping with keys ``"coef"`` and ``"intercept"``, or holds
        non-numbers; ``x`` not an array of numbers.
      ValueError: ``coef`` of rank > 1, or ``x`` whose last axis does not match it.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(predict({"intercept": 1.0, "coef": 2.0}, jnp.array([0.0, 1.0])))
      [1. 3.]
    """
    if not isinstance(params, Mapping) or not {"coef", "intercept"} <= set(params):
        got = sorted(map(str, params)) if isinstance(params, Mapping) else type(params).__name__
        raise TypeError(
            f'Expected `params` to be a dict with keys ["coef", "intercept"], got {got}.'
        )
    x = _numeric("x", x)
    coef = _numeric("params['coef']", params["coef"])
    intercept = _numeric("params['intercept']", params["intercept"])
    if coef.ndim == 0:
        return intercept + coef * x
    if coef.ndim > 1 or x.ndim == 0 or x.shape[-1] != coef.shape[0]:
        raise ValueError(
            f"Expected `x` with a last axis of size {coef.shape[0]} for `params['coef']` of "
            f"shape {coef.shape}, got `x` of shape {x.shape}."
            if coef.ndim == 1
            else f"Expected `params['coef']` of shape () or (p,), got {coef.shape}."
        )
    return intercept + jnp.dot(x, coef, precision=_HIGHEST)


def _gram_stats(x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
    """Centred sufficient statistics of squared loss: one pass builds XᵀX and Xᵀy."""
    xm = x if x.ndim == 2 else x[:, None]
    mx = jnp.mean(xm, axis=0)
    my = jnp.mean(y)
    xc = xm - mx
    yc = y - my
    n = x.shape[0]
    sxx = jnp.dot(xc.T, xc, precision=_HIGHEST) / n
    sxy = jnp.dot(xc.T, yc, precision=_HIGHEST) / n
    syy = jnp.dot(yc, yc, precision=_HIGHEST) / n
    return mx, my, sxx, sxy, syy


def _gram_loss(params: dict[str, jax.Array], stats: tuple[jax.Array, ...]) -> jax.Array:
    """The mean squared error written with the sufficient statistics: O(p²) per call."""
    mx, my, sxx, sxy, syy = stats
    w = jnp.reshape(params["coef"], (-1,))
    r0 = params["intercept"] + jnp.dot(mx, w, precision=_HIGHEST) - my
    quad = jnp.dot(w, jnp.dot(sxx, w, precision=_HIGHEST), precision=_HIGHEST)
    return r0 * r0 + quad - 2 * jnp.dot(w, sxy, precision=_HIGHEST) + syy


def _blocked_value_and_grad(
    p: dict[str, jax.Array], x: jax.Array, y: jax.Array, block: int, n_total: int | None = None
) -> tuple[jax.Array, Any]:
    """``jax.value_and_grad`` of the mean squared error, one cache-sized block of rows at a time.

    The MSE is a sum over rows, so its value and gradient are the sums over row blocks of
    ``mse(block) * rows_in_block / n``, each differentiated by ``jax.value_and_grad``. Same
    mathematics as the whole-array gradient; on CPU it keeps the residuals of each block in
    cache instead of writing and re-reading n-vectors (see docs/regression.md, Speed).
    ``n_total`` is the number of rows of the whole data when ``x`` is one shard of it.
    """
    n = x.shape[0]
    n_blocks = n // block
    weight = 1 / (n if n_total is None else n_total)

    def weighted(q: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        return mse(predict(q, xb), yb) * (yb.shape[0] * weight)

    def body(acc: Any, i: jax.Array) -> tuple[Any, None]:
        xb = lax.dynamic_slice_in_dim(x, i * block, block)
        yb = lax.dynamic_slice_in_dim(y, i * block, block)
        vg = jax.value_and_grad(weighted)(p, xb, yb)
        return jax.tree.map(jnp.add, acc, vg), None

    acc0 = (jnp.zeros((), x.dtype), jax.tree.map(jnp.zeros_like, p))
    acc, _ = lax.scan(body, acc0, jnp.arange(n_blocks, dtype=jnp.int32))
    if n % block:
        rest = jax.value_and_grad(weighted)(p, x[n_blocks * block :], y[n_blocks * block :])
        acc = jax.tree.map(jnp.add, acc, rest)
    return acc


def _sharded_value_and_grad(
    p: dict[str, jax.Array], x: jax.Array, y: jax.Array, mesh: jax.sharding.Mesh, block: int
) -> tuple[jax.Array, Any]:
    """The blocked MSE gradient on every shard of the rows at once, summed with ``psum``.

    Data parallelism written out with ``shard_map``: each device differentiates the MSE of
    its own rows block by block (:func:`_blocked_value_and_grad`, weighted by the global row
    count) and one all-reduce adds the value and gradient. On a CPU split into one JAX
    device per core (``jax_num_cpu_devices``) this is what runs the epoch on every core:
    XLA runs a single-device program's loops on one thread.
    """
    axis = mesh.axis_names[0]
    n = x.shape[0]
    x_spec = PartitionSpec(axis) if x.ndim == 1 else PartitionSpec(axis, None)

    def local(q: Any, xs: jax.Array, ys: jax.Array) -> Any:
        return lax.psum(_blocked_value_and_grad(q, xs, ys, block, n_total=n), axis)

    return _shard_map(local, mesh, (PartitionSpec(), x_spec, PartitionSpec(axis)))(p, x, y)


def _shard_map(fn: Callable[..., Any], mesh: Any, in_specs: Any) -> Callable[..., Any]:
    """``jax.shard_map`` (jax >= 0.7) or its older home, with replication checks off: the
    scan carry starts replicated and becomes per-shard, which the checker cannot follow."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(
            fn, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec(), check_vma=False
        )
    from jax.experimental.shard_map import shard_map  # pragma: no cover (jax < 0.7)

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec(), check_rep=False)


def _data_finite(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.isfinite(x).all() & jnp.isfinite(y).all()


def make_objective(loss: Callable[..., Any], dtype: Any) -> Callable[..., jax.Array]:
    """``(params, x, y) -> scalar``, checking at trace time that ``loss`` returns a scalar."""

    def objective(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        value = jnp.asarray(call_user("loss", loss, predict(params, x), y))
        if value.shape != ():
            raise TypeError(
                f"Expected `loss` to return a scalar, got shape {value.shape}. "
                "Reduce it, e.g. with jnp.mean."
            )
        return value.astype(dtype)

    return objective


def _unroll(n_rows: int) -> int:
    """Scan unroll factor: on small data the loop's per-iteration overhead dominates."""
    return 4 if n_rows <= 4096 else 1


class Program:
    """The training run, in three pure pieces that :func:`build_run` composes into one.

    ``prepare`` casts the data, checks it is finite (for the MSE only once a loss is not, in
    ``finish``), builds the gram statistics and the initial carry; ``advance`` scans a range
    of epochs; ``finish`` finds where the loss first became non-finite, computes the final
    loss and, after a divergence, replays the run up to the last finite epoch. ``fit`` jits
    all three as one program; the CLI's progress bar jits them separately and calls
    ``advance`` chunk by chunk.

    The epoch loop carries only ``(params, opt_state)``: it is a scan over blocks of
    ``log_every`` epochs whose first epoch also emits its gradient, so logging and divergence
    tracking cost nothing per epoch.
    """

    def __init__(
        self,
        optimizer: optax.GradientTransformation,
        loss: Callable[..., Any],
        epochs: int,
        log_every: int,
        batch_size: int | None,
        method: str,
        shard: jax.sharding.Mesh | None = None,
        block: int = 0,
    ) -> None:
        self.shard = shard
        self.block = block
        self.optimizer = optimizer
        self.loss = loss
        self.epochs = epochs
        self.log_every = log_every
        self.batch_size = batch_size
        self.method = method

    def prepare(self, x: jax.Array, y: jax.Array, params: dict[str, jax.Array]) -> tuple[Any, Any]:
        dtype = params["intercept"].dtype
        x = x.astype(dtype)
        y = y.astype(dtype)
        # With the MSE, NaN/inf anywhere in the data makes the first loss non-finite, so
        # `finish` looks at the data only then (one pass less per fit); a custom loss might
        # mask them, so it is checked up front.
        finite = None if self.loss is mse else _data_finite(x, y)
        stats = _gram_stats(x, y) if self.method == "gram" else None
        carry0 = (params, self.optimizer.init(params))
        return (x, y, stats, finite, carry0), carry0

    def _value_and_grad(self, p: Any, data: Any) -> tuple[jax.Array, Any]:
        x, y, stats = data[:3]
        if self.method == "gram":
            value, g = jax.value_and_grad(_gram_loss)(p, stats)
            return jnp.maximum(value, 0), g  # rounding can take it a hair below 0
        if self.shard is not None:
            return _sharded_value_and_grad(p, x, y, self.shard, self.block)
        if self.block and x.shape[0] >= 2 * self.block:
            return _blocked_value_and_grad(p, x, y, self.block)
        return jax.value_and_grad(make_objective(self.loss, x.dtype))(p, x, y)

    def _update(self, p: Any, state: Any, g: Any) -> tuple[Any, Any]:
        updates, state = self.optimizer.update(g, state, p)
        return optax.apply_updates(p, updates), state

    def _epoch(self, carry: Any, data: Any, key: Any, epoch: jax.Array) -> tuple[Any, Any, Any]:
        """One epoch from ``carry``: returns the new carry, the loss and gradient at its start."""
        p, state = carry
        value, g = self._value_and_grad(p, data)
        if self.batch_size is None:
            return self._update(p, state, g), value, g
        x, y = data[0], data[1]
        n, b = x.shape[0], self.batch_size
        steps = n // b  # remainder rule: the n % b rows last in this epoch's shuffle are skipped
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        idx = perm[: steps * b].reshape(steps, b)
        objective = make_objective(self.loss, x.dtype)

        def inner(c: Any, rows: jax.Array) -> tuple[Any, None]:
            gb = jax.grad(objective)(c[0], x[rows], y[rows])
            return self._update(c[0], c[1], gb), None

        (p, state), _ = lax.scan(inner, (p, state), idx)
        return (p, state), value, g

    def advance(
        self, carry: Any, data: Any, key: Any, start: jax.Array, length: int
    ) -> tuple[Any, jax.Array, Any]:
        """Epochs ``start .. start+length-1`` (``start`` a multiple of ``log_every``).

        Returns the carry, the losses of those epochs, and the gradients at the logged ones.
        """
        le = self.log_every
        unroll = _unroll(data[0].shape[0])

        def plain(c: Any, epoch: jax.Array) -> tuple[Any, jax.Array]:
            c, value, _ = self._epoch(c, data, key, epoch)
            return c, value

        def block(c: Any, first: jax.Array, size: int) -> tuple[Any, tuple[jax.Array, Any]]:
            c, v0, g0 = self._epoch(c, data, key, first)
            if size == 1:
                return c, (v0[None], g0)
            ids = first + jnp.arange(1, size, dtype=jnp.int32)
            c, vs = lax.scan(plain, c, ids, unroll=min(unroll, size - 1))
            return c, (jnp.concatenate([v0[None], vs]), g0)

        n_blocks, tail = divmod(length, le)
        losses, grads = [], []
        if n_blocks:
            firsts = start + le * jnp.arange(n_blocks, dtype=jnp.int32)
            carry, (vs, gs) = lax.scan(lambda c, f: block(c, f, le), carry, firsts)
            losses.append(vs.reshape(-1))
            grads.append(gs)
        if tail:
            carry, (vs, g0) = block(carry, start + n_blocks * le, tail)
            losses.append(vs)
            grads.append(jax.tree.map(lambda a: a[None], g0))
        grads_all = jax.tree.map(lambda *a: jnp.concatenate(a), *grads)
        return carry, jnp.concatenate(losses), grads_all

    def finish(
        self, carry: Any, data: Any, key: Any, losses: jax.Array, grads: Any
    ) -> tuple[Any, ...]:
        x, y, stats, finite, carry0 = data
        p = carry[0]
        if self.method == "gram":
            final = jnp.maximum(_gram_loss(p, stats), 0)
        else:
            final = make_objective(self.loss, x.dtype)(p, x, y)
        epochs = self.epochs
        bad = ~jnp.isfinite(losses)
        if finite is None:
            finite = lax.cond(
                bad.any() | ~jnp.isfinite(final), _data_finite, lambda *_: jnp.bool_(True), x, y
            )
        div = jnp.where(
            bad.any(), jnp.argmax(bad), jnp.where(jnp.isfinite(final), -1, epochs)
        ).astype(jnp.int32)
        diverged = div >= 0
        last = jnp.maximum(div - 1, 0)  # the last epoch whose starting params had a finite loss

        def replay(_: Any) -> Any:
            def body(e: jax.Array, c: Any) -> Any:
                return self._epoch(c, data, key, e)[0]

            return lax.fori_loop(0, last, body, carry0)[0]

        p = lax.cond(diverged, replay, lambda _: p, None)
        final = jnp.where(diverged, losses[last], final)
        status = jnp.where(diverged, DIVERGED, OK).astype(jnp.int32)
        log_epochs = jnp.arange(0, epochs, self.log_every, dtype=jnp.int32)
        log_loss = losses[:: self.log_every]
        flags = jnp.stack([status, div, finite.astype(jnp.int32)], axis=-1)
        return p, losses, log_epochs, log_loss, grads, final, status, div, flags


def build_run(
    optimizer: optax.GradientTransformation,
    loss: Callable[..., Any],
    epochs: int,
    log_every: int,
    batch_size: int | None,
    method: str,
    shard: jax.sharding.Mesh | None = None,
    block: int = 0,
) -> Callable[..., tuple[Any, ...]]:
    """The whole training run as a pure function ``(x, y, params, key) -> outputs``.

    Not jitted here: :func:`cached_run` jits it, :mod:`._bootstrap` vmaps it first.
    """
    program = Program(optimizer, loss, epochs, log_every, batch_size, method, shard, block)

    def run(x: jax.Array, y: jax.Array, params: dict[str, jax.Array], key: Any) -> tuple[Any, ...]:
        data, carry = program.prepare(x, y, params)
        carry, losses, grads = program.advance(carry, data, key, jnp.int32(0), epochs)
        return program.finish(carry, data, key, losses, grads)

    return run


SMALL_ROWS = 4096
"""Up to this many rows, programs are compiled without LLVM's expensive passes: compiling
takes about 40% less time and the run is as fast (it is bound by per-iteration overhead)."""


def compiler_options(n_rows: int) -> dict[str, Any] | None:
    """XLA options for a program over ``n_rows`` rows (None: XLA's defaults)."""
    return {"xla_llvm_disable_expensive_passes": True} if n_rows <= SMALL_ROWS else None


def _jit(fn: Callable[..., Any], small: bool, **kwargs: Any) -> Callable[..., Any]:
    return jax.jit(fn, compiler_options=compiler_options(0 if small else SMALL_ROWS + 1), **kwargs)


@functools.lru_cache(maxsize=256)
def _cached(*settings: Any) -> Callable[..., tuple[Any, ...]]:
    *program, small = settings
    return _jit(build_run(*program), small)


def cached_run(*settings: Any) -> Callable[..., tuple[Any, ...]]:
    """The jitted run for these static settings (optimizer, loss, epochs, log_every,
    batch_size, method, shard, block, small), built once and reused."""
    try:
        return _cached(*settings)
    except TypeError:  # an unhashable optimizer or loss: compile for this call only
        return _cached.__wrapped__(*settings)


def check_settings(
    optimizer: Any, loss: Any, method: Any, batch_size: Any
) -> tuple[Any, Callable[..., Any], str]:
    """Validates optimizer, loss and method; returns them with defaults filled in."""
    if optimizer is None:
        optimizer = _DEFAULT_OPTIMIZER
    elif not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            "Expected `optimizer` to be an optax.GradientTransformation such as "
            f"optax.sgd(0.1), got {optimizer!r}."
        )
    if method is None:
        method = "autodiff"
    method = check_choice("method", method, _METHODS)
    if loss is None:
        loss = mse
    elif not callable(loss):
        raise TypeError(f"Expected `loss` to be a callable (pred, y) -> scalar, got {loss!r}.")
    if method == "gram":
        if loss is not mse:
            raise ValueError(
                "Expected loss=None with method='gram': the sufficient-statistics path is "
                "exact only for the mean squared error. Use method='autodiff' for a custom loss."
            )
        if batch_size is not None:
            raise ValueError(
                "Expected batch_size=None with method='gram': minibatches need the data each "
                "step. Use method='autodiff' for minibatch SGD."
            )
    return optimizer, loss, method


def _is_traced(x: Any, y: Any, params: Any) -> bool:
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return True
    return params is not None and any(
        isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(params)
    )


def fit(
    x: ArrayLike,
    y: ArrayLike,
    *,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 500,
    params: Mapping[str, ArrayLike] | None = None,
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    batch_size: int | None = None,
    key: Any = None,
    log_every: int = 100,
    mesh: jax.sharding.Mesh | None = None,
    throw: bool = True,
    method: str = "autodiff",
) -> FitResult:
    r"""Fits ``y ≈ intercept + x · coef`` with an optax optimizer, in one jitted ``lax.scan``.

    Each epoch takes one optimizer step on the full-data gradient (the tutorial's loop), or,
    with ``batch_size``, one pass of minibatch steps over a fresh shuffle of the rows.

    Args:
      x: inputs of shape ``(n,)`` (the tutorial) or ``(n, p)``. Integers are cast to the
        default float dtype.
      y: targets of shape ``(n,)``.
      optimizer: any ``optax.GradientTransformation``; default ``optax.sgd(0.1)``. Reuse the
        same object across calls to reuse the compiled program.
      epochs: number of epochs, >= 1.
      params: initial ``{"intercept": shape (), "coef": shape () or (p,)}``; default zeros.
      loss: ``(pred, y) -> scalar``; default the mean squared error.
      batch_size: rows per minibatch step; None for full batch. Rows are reshuffled every
        epoch with ``jax.random.fold_in(key, epoch)``; each epoch takes ``n // batch_size``
        steps and the ``n % batch_size`` rows left over by that epoch's shuffle are skipped
        (a different set each epoch, as torch's ``DataLoader(drop_last=True)``).
      key: PRNG key, required with ``batch_size``.
      log_every: log the loss and gradient at epochs ``0, log_every, ...``.
      mesh: a ``jax.sharding.Mesh``: rows are sharded over its first axis (data parallel);
        the number of rows must be divisible by that axis's size.
      throw: raise :class:`DivergenceError` when the loss becomes NaN/inf; with False the
        result's ``status`` says so and ``params`` are the last finite ones.
      method: ``"autodiff"`` (default: ``jax.grad`` of the loss) or ``"gram"`` (squared loss,
        full batch only: one pass builds XᵀX and Xᵀy, each epoch then costs O(p²)).

    Returns:
      A :class:`FitResult`.

    Raises:
      TypeError, ValueError: bad input, named and explained (NaN/inf in the data included).
      DivergenceError: the loss diverged and ``throw`` is True.

    Examples:
      >>> import jax, optax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import fit
      >>> x, y = seed.regression_data(jax.random.key(0), 100)
      >>> result = fit(x, y, optimizer=optax.sgd(0.1), epochs=500)
      >>> result.losses.shape, result.log.epoch.tolist()
      ((500,), [0, 100, 200, 300, 400])
    """
    call = _boundary(
        x, y, optimizer, epochs, params, loss, batch_size, key, log_every, mesh, method
    )
    throw = check_bool("throw", throw)
    run = cached_run(*call.settings)
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
        out = run(call.x, call.y, call.params, call.key)
    result = to_result(out)
    if not call.traced:
        check_outcome(out, throw)
    return result


def compiled_memory(x: ArrayLike, y: ArrayLike, **kwargs: Any) -> Any:
    """XLA's memory analysis of the program ``fit(x, y, **kwargs)`` runs, without running it.

    ``temp_size_in_bytes`` is the scratch memory beyond the arguments (x, y) and outputs:
    the measure of "extra copies of the data" in docs/regression.md.
    """
    call = _boundary_from_kwargs(x, y, kwargs)
    run: Any = cached_run(*call.settings)  # a jax.jit-wrapped function
    return run.lower(call.x, call.y, call.params, call.key).compile().memory_analysis()


_FIT_KWARGS = ("optimizer", "epochs", "params", "loss", "batch_size", "key", "log_every", "mesh")


def _boundary_from_kwargs(x: Any, y: Any, kwargs: dict[str, Any]) -> _Call:
    """:func:`_boundary` for ``fit``'s keyword arguments given as a dict (``throw`` aside)."""
    unknown = set(kwargs) - {*_FIT_KWARGS, "method"}
    if unknown:
        raise TypeError(f"Unexpected keyword arguments {sorted(unknown)}.")
    defaults = {"epochs": 500, "log_every": 100, "method": "autodiff"}
    a = {k: kwargs.get(k, defaults.get(k)) for k in (*_FIT_KWARGS, "method")}
    return _boundary(
        x, y, a["optimizer"], a["epochs"], a["params"], a["loss"],
        a["batch_size"], a["key"], a["log_every"], a["mesh"], a["method"],
    )  # fmt: skip


class _Call(NamedTuple):
    x: Any
    y: Any
    params: dict[str, Any]
    key: Any
    settings: tuple[Any, ...]  # optimizer, loss, epochs, log_every, batch_size, method
    traced: bool


def _boundary(
    x: Any,
    y: Any,
    optimizer: Any,
    epochs: Any,
    params: Any,
    loss: Any,
    batch_size: Any,
    key: Any,
    log_every: Any,
    mesh: Any,
    method: Any,
) -> _Call:
    """Every check of ``fit``'s arguments; host-side, on shapes and dtypes only."""
    data = _data.check_data(x, y)
    epochs = _data.check_epochs(epochs)
    log_every = _data.check_log_every(log_every)
    optimizer, loss_fn, method = check_settings(optimizer, loss, method, batch_size)
    batch_size, key = _data.check_batch(batch_size, key, data.n)
    traced = _is_traced(x, y, params)
    p0 = _data.check_params(params, data) if not traced else _traced_params(params, data)
    mesh = _data.check_mesh(mesh, data.n)
    xs, ys = (data.x, data.y) if mesh is None else _data.shard_rows(data, mesh)
    shard, block = _cpu_layout(data, loss_fn, method, mesh)
    small = data.n <= SMALL_ROWS
    settings = (optimizer, loss_fn, epochs, log_every, batch_size, method, shard, block, small)
    return _Call(xs, ys, p0, key, settings, traced)


BLOCK_ROWS = 32768
"""Rows per block of the CPU blocked gradient (128 KiB of float32 per column: x, y and the
residuals of a block stay in a core's L2 cache)."""


def _platform(data: _data.Data, mesh: Any) -> str:
    if mesh is not None:
        return str(mesh.devices.flat[0].platform)
    x = data.x
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return str(next(iter(x.devices())).platform)
    device = getattr(jax.config, "jax_default_device", None)
    platform = device if isinstance(device, str) else getattr(device, "platform", None)
    return str(platform or jax.default_backend())


def _cpu_layout(
    data: _data.Data, loss: Any, method: str, mesh: Any
) -> tuple[jax.sharding.Mesh | None, int]:
    """``(shard, block)``: how the default MSE gradient runs on CPU.

    ``block`` is the row-block size of the blocked gradient (0: the whole-array gradient);
    ``shard`` is the mesh to ``shard_map`` it over (None: one device, or XLA's automatic
    partitioning). Only for the default loss on CPU with at least 8 blocks of rows per
    device: on GPUs/TPUs XLA fuses the whole-array gradient into one pass by itself, and a
    custom loss need not be a sum over rows.
    """
    if loss is not mse or method != "autodiff" or _platform(data, mesh) != "cpu":
        return None, 0
    block = max(1024, BLOCK_ROWS // (1 if data.p is None else data.p))
    rows = data.n if mesh is None else data.n // int(mesh.shape[mesh.axis_names[0]])
    if rows < 8 * block:
        return None, 0
    return (None if mesh is None else _data.auto_mesh(mesh)), block


@functools.lru_cache(maxsize=64)
def _chunk_programs(*settings: Any) -> tuple[Callable[..., Any], ...]:
    *args, small = settings
    program = Program(*args)
    advance = _jit(program.advance, small, static_argnames="length")
    return _jit(program.prepare, small), advance, _jit(program.finish, small)


def fit_in_chunks(
    x: ArrayLike,
    y: ArrayLike,
    *,
    on_chunk: Callable[[int, float], None],
    chunk_epochs: int,
    throw: bool = True,
    **kwargs: Any,
) -> FitResult:
    """:func:`fit`, with the scan cut into chunks of ``chunk_epochs`` epochs.

    After each chunk ``on_chunk(epochs_done, loss)`` is called (the CLI's progress bar). The
    trajectory is the same as ``fit``'s; the cost is one dispatch and one sync per chunk, so
    ``fit`` itself never pays it.
    """
    call = _boundary_from_kwargs(x, y, kwargs)
    chunk_epochs = _data.check_epochs(chunk_epochs, "chunk_epochs")
    prepare, advance, finish = _chunk_programs(*call.settings)
    epochs, log_every = call.settings[2], call.settings[3]
    chunk_epochs = -(-chunk_epochs // log_every) * log_every  # chunks start on logged epochs
    data, carry = prepare(call.x, call.y, call.params)
    pieces, grads = [], []
    for start in range(0, epochs, chunk_epochs):
        length = min(chunk_epochs, epochs - start)
        carry, losses, g = advance(carry, data, call.key, jnp.int32(start), length=length)
        pieces.append(losses)
        grads.append(g)
        on_chunk(start + length, float(losses[-1]))
    all_grads = jax.tree.map(lambda *a: jnp.concatenate(a), *grads)
    out = finish(carry, data, call.key, jnp.concatenate(pieces), all_grads)
    check_outcome(out, throw)
    return to_result(out)


def _traced_params(params: Any, data: _data.Data) -> dict[str, Any]:
    shapes = _data.param_shapes(data.p)
    if params is None:
        return {k: jnp.zeros(s, data.dtype) for k, s in shapes.items()}
    return {k: jnp.asarray(params[k], data.dtype) for k in shapes}


def to_result(out: tuple[Any, ...]) -> FitResult:
    p, losses, log_epochs, log_loss, gbuf, final, status, div, _ = out
    return FitResult(
        params=p,
        losses=losses,
        log=FitLog(epoch=log_epochs, loss=log_loss, grad=gbuf),
        final_loss=final,
        status_code=status,
        diverged_at=div,
    )


def check_outcome(out: tuple[Any, ...], throw: bool) -> None:
    """Raises for NaN/inf in the data, and for divergence when ``throw``."""
    flags = np.asarray(out[8])  # (..., 3): status, diverged_at, data finite; one transfer
    status_h, div_h, finite_h = flags[..., 0], flags[..., 1], flags[..., 2]
    _data.raise_if_nonfinite_data(np.all(finite_h))
    if throw and np.any(status_h != OK):
        if div_h.ndim == 0:
            where = f"at epoch {int(div_h)}"
        else:
            bad = div_h[div_h >= 0]
            where = f"in {bad.size} of {div_h.size} resamples (first at epoch {int(bad.min())})"
        raise DivergenceError(
            f"The loss diverged (became NaN or inf) {where}. Try a smaller learning rate, "
            "or pass throw=False to get the last finite parameters and the status."
        )

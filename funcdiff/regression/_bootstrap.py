"""``bootstrap``: many resampled fits in ONE vmapped, jitted call; percentile intervals.

Each resample draws ``n`` row indices with replacement from its own key (``jax.random.split``
of the caller's key), gathers its rows and runs exactly :func:`funcdiff.regression.fit`'s
program; ``jax.vmap`` batches all of them into one compiled program.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._validation import check_bool, is_prng_key
from funcdiff.regression import _data
from funcdiff.regression._fit import (
    build_run,
    check_outcome,
    check_settings,
    compiler_options,
    to_result,
)
from funcdiff.regression._result import OK, FitResult

__all__ = ["bootstrap", "confidence_interval", "standard_error"]

_FIT_KWARGS = frozenset(
    {"optimizer", "epochs", "params", "loss", "batch_size", "log_every", "throw", "method"}
)


@functools.lru_cache(maxsize=128)
def _cached(
    optimizer: Any,
    loss: Any,
    epochs: int,
    log_every: int,
    batch_size: Any,
    method: str,
    n_resamples: int,
    n_rows: int,
) -> Callable[..., tuple[Any, ...]]:
    run = build_run(optimizer, loss, epochs, log_every, batch_size, method)

    def one(key: jax.Array, x: jax.Array, y: jax.Array, params: Any) -> tuple[Any, ...]:
        k_rows, k_fit = jax.random.split(key)
        rows = jax.random.randint(k_rows, (x.shape[0],), 0, x.shape[0])
        return run(x[rows], y[rows], params, k_fit if batch_size is not None else None)

    def many(key: jax.Array, x: jax.Array, y: jax.Array, params: Any) -> tuple[Any, ...]:
        keys = jax.random.split(key, n_resamples)
        out = jax.vmap(one, in_axes=(0, None, None, None))(keys, x, y, params)
        finite = jnp.isfinite(x).all() & jnp.isfinite(y).all()  # all rows, drawn or not
        flags = out[8].at[:, 2].set(finite.astype(jnp.int32))
        return (*out[:8], flags)

    return jax.jit(many, compiler_options=compiler_options(n_rows))


def bootstrap(key: Any, x: Any, y: Any, n_resamples: int, **fit_kwargs: Any) -> FitResult:
    """Fits ``n_resamples`` bootstrap resamples of the rows in one vmapped, jitted call.

    Args:
      key: a PRNG key (``jax.random.key(0)``); it draws the resamples and, with
        ``batch_size``, their minibatch shuffles.
      x: the inputs, as :func:`funcdiff.regression.fit`.
      y: the targets, as :func:`funcdiff.regression.fit`.
      n_resamples: number of resamples, >= 1.
      **fit_kwargs: ``optimizer``, ``epochs``, ``params``, ``loss``, ``batch_size``,
        ``log_every``, ``throw``, ``method`` as in :func:`funcdiff.regression.fit` (``mesh`` and
        ``key`` are not accepted: resamples are not sharded, and keys come from ``key``).

    Returns:
      A :class:`FitResult` whose every leaf has a leading axis of ``n_resamples``.

    Raises:
      TypeError, ValueError: bad input, as ``fit``; an unknown keyword.
      DivergenceError: some resample diverged and ``throw`` is True (the default).

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import bootstrap, confidence_interval
      >>> x, y = seed.regression_data(jax.random.key(0), 100)
      >>> boot = bootstrap(jax.random.key(1), x, y, 200)
      >>> boot.params["coef"].shape
      (200,)
      >>> lo, hi = confidence_interval(boot)["coef"]
      >>> bool(lo < hi)
      True
    """
    unknown = set(fit_kwargs) - _FIT_KWARGS
    if unknown:
        extra = " (resamples run on one device)" if "mesh" in unknown else ""
        extra += " (keys are drawn from `key`)" if "key" in unknown else ""
        raise TypeError(
            f"Expected keyword arguments among {sorted(_FIT_KWARGS)}, got {sorted(unknown)}{extra}."
        )
    if not is_prng_key(key) or getattr(key, "shape", None) != ():
        if hasattr(key, "shape") and tuple(key.shape) == (2,) and key.dtype == np.uint32:
            key = jax.random.wrap_key_data(key)
        else:
            raise TypeError(
                f"Expected `key` to be a PRNG key such as jax.random.key(0), got {key!r}."
            )
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral):
        raise TypeError(f"Expected `n_resamples` to be an integer >= 1, got {n_resamples!r}.")
    if n_resamples < 1:
        raise ValueError(f"Expected `n_resamples` to be an integer >= 1, got {n_resamples}.")
    if n_resamples > _data.MAX_EPOCHS:
        raise ValueError(
            f"Expected `n_resamples` to be an integer <= {_data.MAX_EPOCHS:_}, got "
            f"{int(n_resamples):_}."
        )
    data = _data.check_data(x, y)
    epochs = _data.check_epochs(fit_kwargs.get("epochs", 500))
    if n_resamples * epochs > _data.MAX_EPOCHS:
        raise ValueError(
            f"Expected `n_resamples` * `epochs` <= {_data.MAX_EPOCHS:_}, got {int(n_resamples):_} "
            f"* {epochs:_}: every resample records every epoch's loss. Use fewer resamples "
            "or epochs."
        )
    throw = check_bool("throw", fit_kwargs.get("throw", True))
    log_every = _data.check_log_every(fit_kwargs.get("log_every", 100))
    batch_size = fit_kwargs.get("batch_size")
    optimizer, loss, method = check_settings(
        fit_kwargs.get("optimizer"), fit_kwargs.get("loss"), fit_kwargs.get("method"), batch_size
    )
    batch_size, _ = _data.check_batch(batch_size, key, data.n)
    params = _data.check_params(fit_kwargs.get("params"), data)
    try:
        run = _cached(
            optimizer, loss, epochs, log_every, batch_size, method, int(n_resamples), data.n
        )
    except TypeError:  # unhashable optimizer or loss
        run = _cached.__wrapped__(
            optimizer, loss, epochs, log_every, batch_size, method, int(n_resamples), data.n
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
        out = run(key, data.x, data.y, params)
    check_outcome(out, throw)
    return to_result(out)


def _ok_params(result: FitResult, what: str) -> dict[str, np.ndarray]:
    if not isinstance(result, FitResult):
        raise TypeError(f"Expected `result` to be a FitResult from bootstrap, got {result!r}.")
    status = np.asarray(result.status_code)
    if status.ndim != 1:
        raise ValueError(
            f"Expected a FitResult with a leading resample axis (from `bootstrap`), got one "
            f"with status of shape {status.shape}; {what} needs several resamples."
        )
    keep = status == OK
    if keep.sum() < 2:
        raise ValueError(
            f"Expected at least 2 resamples whose loss stayed finite, got {int(keep.sum())} "
            f"of {status.size}. Try a smaller learning rate."
        )
    return {k: np.asarray(v)[keep] for k, v in result.params.items()}


def confidence_interval(
    result: FitResult, level: float = 0.95
) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Percentile bootstrap interval of each parameter.

    Resamples whose loss diverged (``status == "diverged"``, possible with ``throw=False``) are left
    out.

    Args:
      result: the output of :func:`bootstrap`.
      level: coverage in (0, 1); the interval runs from the ``(1-level)/2`` to the
        ``(1+level)/2`` quantile.

    Returns:
      ``{"intercept": (lower, upper), "coef": (lower, upper)}``, each bound of the
      parameter's shape.

    Raises:
      TypeError: ``result`` is not a FitResult.
      ValueError: ``level`` outside (0, 1), or not a bootstrap result.

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import bootstrap, confidence_interval
      >>> x, y = seed.regression_data(jax.random.key(0), 100)  # y = 2 + x + noise
      >>> ci = confidence_interval(bootstrap(jax.random.key(1), x, y, 200), level=0.95)
      >>> {k: (round(float(lo), 2), round(float(hi), 2)) for k, (lo, hi) in ci.items()}
      {'coef': (0.77, 1.19), 'intercept': (1.6, 2.01)}
    """
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(f"Expected `level` to be a number in (0, 1), got {level!r}.")
    if not 0 < float(level) < 1:
        raise ValueError(f"Expected `level` in (0, 1), e.g. 0.95, got {level}.")
    params = _ok_params(result, "a confidence interval")
    q = [50 * (1 - float(level)), 50 * (1 + float(level))]
    out = {}
    for k, v in params.items():
        lo, hi = np.percentile(v, q, axis=0)
        out[k] = (jnp.asarray(lo, v.dtype), jnp.asarray(hi, v.dtype))
    return out


def standard_error(result: FitResult) -> dict[str, jax.Array]:
    """Bootstrap standard error (standard deviation over resamples, ddof=1) per parameter.

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import bootstrap, standard_error
      >>> x, y = seed.regression_data(jax.random.key(0), 100)
      >>> se = standard_error(bootstrap(jax.random.key(1), x, y, 200))
      >>> {k: round(float(v), 2) for k, v in se.items()}
      {'coef': 0.1, 'intercept': 0.11}
    """
    params = _ok_params(result, "a standard error")
    return {k: jnp.asarray(v.std(axis=0, ddof=1), v.dtype) for k, v in params.items()}

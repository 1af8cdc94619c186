"""The records ``fit`` and ``bootstrap`` return: :class:`FitResult` and :class:`FitLog`.

Both are pytrees, so a ``FitResult`` can come out of ``jax.vmap`` (``bootstrap`` returns one
whose leaves have a leading resample axis) and go through ``jax.tree.map``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np

from funcdiff._report import fmt, table

__all__ = ["DIVERGED", "OK", "FitLog", "FitResult"]

OK = 0
"""``FitResult.status_code`` when every epoch's loss was finite (``status == "ok"``)."""
DIVERGED = 1
"""``FitResult.status_code`` when the loss became NaN or inf at epoch ``diverged_at``
(``status == "diverged"``)."""


def _names(params: dict[str, Any]) -> list[str]:
    """Intercept first, then the rest (JAX returns dicts with sorted keys)."""
    return sorted(params, key=lambda k: (k != "intercept", k))


class FitLog(NamedTuple):
    """What the tutorial prints every ``log_every`` epochs.

    Attributes:
      epoch: int array of the logged epochs ``0, log_every, 2*log_every, ... < epochs``.
      loss: the loss at those epochs' starting parameters.
      grad: a params-shaped dict; each leaf has a leading axis of ``len(epoch)``: the full-data
        gradient at that epoch's parameters, before its update.

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import fit
      >>> x, y = seed.regression_data(jax.random.key(0), 100)
      >>> log = fit(x, y, epochs=500).log
      >>> log.epoch.tolist(), log.grad["coef"].shape
      ([0, 100, 200, 300, 400], (5,))
      >>> [round(float(v), 3) for v in log.loss]
      [5.933, 1.036, 1.036, 1.036, 1.036]
    """

    epoch: Any
    loss: Any
    grad: dict[str, Any]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`funcdiff.regression.fit` (a pytree: it vmaps and tree-maps).

    Attributes:
      params: ``{"intercept": shape (), "coef": shape () or (p,)}``; after divergence with
        ``throw=False``, the last parameters whose loss was finite.
      losses: shape ``(epochs,)``, the loss at each epoch's starting parameters.
      log: a :class:`FitLog` every ``log_every`` epochs.
      final_loss: the loss at the returned ``params``.
      status_code: int array, :data:`OK` (0) or :data:`DIVERGED` (1); the pytree leaf behind
        the :attr:`status` property.
      diverged_at: int array, the first epoch whose loss was not finite (``epochs`` when the
        update of the last epoch overflowed), or -1.

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> from funcdiff.regression import fit
      >>> x, y = seed.regression_data(jax.random.key(0), 100)  # y = 2 + x + noise
      >>> result = fit(x, y, epochs=500)
      >>> result.ok, result.status, result.message
      (True, 'ok', 'ok: the loss stayed finite')
      >>> {k: round(float(v), 2) for k, v in result.params.items()}
      {'coef': 0.98, 'intercept': 1.79}
      >>> jax.tree.map(lambda a: a.shape, result).losses  # a pytree
      (500,)
    """

    params: dict[str, Any]
    losses: Any
    log: FitLog
    final_loss: Any
    status_code: Any
    diverged_at: Any

    @property
    def ok(self) -> bool:
        """True when no run (no resample, for ``bootstrap``) diverged."""
        return bool(np.all(np.asarray(self.status_code) == OK))

    @property
    def status(self) -> Any:
        """``"ok"`` or ``"diverged"`` (an array of those for a batch of runs, e.g. bootstrap)."""
        codes = np.asarray(self.status_code)
        names = np.where(codes == OK, "ok", "diverged")
        return str(names) if names.ndim == 0 else names

    @property
    def message(self) -> str:
        """One line saying how the run ended."""
        status = np.asarray(self.status_code)
        if status.ndim == 0:
            if int(status) == OK:
                return "ok: the loss stayed finite"
            return (
                f"diverged: the loss became non-finite at epoch {int(self.diverged_at)}; "
                "params are the last finite ones. Try a smaller learning rate."
            )
        bad = int(np.sum(status != OK))
        if bad == 0:
            return f"ok: the loss stayed finite in all {status.size} resamples"
        return f"diverged in {bad} of {status.size} resamples; try a smaller learning rate"

    def __str__(self) -> str:
        status = np.asarray(self.status_code)
        losses = np.asarray(self.losses)
        if status.ndim == 0:
            names = _names(self.params)
            rows = [[name, np.asarray(self.params[name])] for name in names]
            head = table(
                ["parameter", "value"],
                rows,
                title=f"FitResult: {losses.shape[-1]} epochs, {self.message}",
                digits=6,
            )
            log_rows = []
            g = {k: np.asarray(v) for k, v in self.log.grad.items()}
            epochs, log_loss = np.asarray(self.log.epoch), np.asarray(self.log.loss)
            for i, (e, lo) in enumerate(zip(epochs, log_loss, strict=True)):
                log_rows.append([int(e), float(lo), *(g[k][i] for k in names)])
            log = table(["epoch", "loss", *(f"grad {k}" for k in names)], log_rows, digits=6)
            return f"{head}\nfinal loss: {fmt(float(self.final_loss), digits=6)}\n\n{log}"
        # A batch of runs (bootstrap): mean and spread over the leading axis.
        rows = []
        for name in _names(self.params):
            a = np.asarray(self.params[name], dtype=np.float64)
            spread = a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros_like(a[0])
            rows.append([name, a.mean(axis=0), spread])
        return table(
            ["parameter", "mean", "std (bootstrap SE)"],
            rows,
            title=f"FitResult over {status.size} resamples, {losses.shape[-1]} epochs: "
            f"{self.message}",
            digits=6,
        )

r"""``ols``: the closed-form least-squares fit, the answer every optimizer should reach.

Solves :math:`\min_{b_0, b} \lVert y - b_0 - X b \rVert^2` by centring ``x`` and ``y`` (which
removes the intercept column and its conditioning cost) and calling ``jnp.linalg.lstsq``
(SVD) on the centred design; the intercept is then :math:`\bar y - \bar x \cdot b`. The normal
equations (XᵀX)⁻¹Xᵀy are never formed, so the error grows with cond(X), not cond(X)².
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from funcdiff.regression import _data

__all__ = ["ols"]


@jax.jit
def _ols(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    xm = x if x.ndim == 2 else x[:, None]
    mx = jnp.mean(xm, axis=0)
    my = jnp.mean(y)
    coef, _, _, _ = jnp.linalg.lstsq(xm - mx, y - my)
    intercept = my - jnp.dot(mx, coef, precision=jax.lax.Precision.HIGHEST)
    finite = jnp.isfinite(x).all() & jnp.isfinite(y).all()
    return intercept, coef, finite


def ols(x: ArrayLike, y: ArrayLike) -> dict[str, jax.Array]:
    """The least-squares intercept and coefficients, in closed form.

    Computed in the data's float dtype: float64 when x64 is on (float32 data is promoted),
    float32 otherwise. When ``x`` is rank-deficient (a constant column, fewer rows than
    columns) the minimum-norm solution is returned.

    Args:
      x: inputs of shape ``(n,)`` or ``(n, p)``.
      y: targets of shape ``(n,)``.

    Returns:
      ``{"intercept": shape (), "coef": shape () for 1-D x, (p,) for 2-D x}``.

    Raises:
      TypeError, ValueError: as :func:`funcdiff.regression.fit` (shapes, dtypes, NaN/inf).

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff.regression import ols
      >>> sol = ols(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 3.0, 5.0]))
      >>> round(float(sol["intercept"]), 4), round(float(sol["coef"]), 4)
      (1.0, 2.0)
    """
    data = _data.check_data(x, y)
    dtype = jnp.promote_types(data.dtype, jnp.result_type(float))
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
        intercept, coef, finite = _ols(jnp.asarray(data.x, dtype), jnp.asarray(data.y, dtype))
    if not isinstance(finite, jax.core.Tracer):
        _data.raise_if_nonfinite_data(finite)
    return {"intercept": intercept, "coef": coef[0] if data.p is None else coef}

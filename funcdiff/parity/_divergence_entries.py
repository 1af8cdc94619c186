"""The registered divergences themselves: one :class:`Divergence` per op and point.

Values were measured in float64 with jax 0.10.2 and torch 2.13.0 (CPU); the tests re-measure
every entry (:meth:`Divergence.holds`). Each ``covers`` predicate receives the NumPy arguments
of a catalog case listed in ``cases`` and says whether they hit the entry's point, which is how
the kink search tells a registered disagreement from a new one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff.parity import _like_torch as L
from funcdiff.parity import _polygamma as G
from funcdiff.parity._divergences import Divergence
from funcdiff.parity._torch import require_torch

__all__ = ["registry"]

_NAN, _INF = float("nan"), float("inf")


def _named(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    fn._display = name  # type: ignore[attr-defined]
    return fn


def _a(*xs: Any) -> tuple[np.ndarray, ...]:
    return tuple(
        np.asarray(x, dtype=np.complex128 if np.iscomplexobj(x) else np.float64) for x in xs
    )


def _t() -> Any:
    return require_torch()


def _any_eq(value: float) -> Callable[..., bool]:
    return lambda x, *_: bool(np.any(np.asarray(x) == value))


def _any_abs_eq(value: float) -> Callable[..., bool]:
    return lambda x, *_: bool(np.any(np.abs(np.asarray(x)) == value))


def _abs_covers(x: Any, *rest: Any) -> bool:
    """``abs`` of ``x``, or of ``x - y`` for a loss of two arguments, hits 0."""
    d = np.asarray(x) - np.asarray(rest[0]) if rest else np.asarray(x)
    return bool(np.any(d == 0))


def _zero_rows(axis: int | None) -> Callable[..., bool]:
    def covers(x: Any, *_: Any) -> bool:
        x = np.asarray(x)
        if axis is None or x.ndim == 0:
            return bool(np.all(x == 0))
        return bool(np.any(np.all(x == 0, axis=axis)))

    return covers


def _any_zero_or_constant(x: Any, *_: Any) -> bool:
    """Some row (last axis) has zero spread, or the whole array does."""
    x = np.asarray(x)
    rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
    return bool(np.any(np.ptp(rows, axis=-1) == 0) or np.ptp(x) == 0)


def _ties_along(axis: int, kind: str) -> Callable[..., bool]:
    def covers(x: Any, *_: Any) -> bool:
        x = np.asarray(x)
        ext = (
            np.max(x, axis=axis, keepdims=True)
            if kind == "max"
            else np.min(x, axis=axis, keepdims=True)
        )
        return bool(np.any(np.sum(x == ext, axis=axis) > 1))

    return covers


def _any_tie(x: Any, *_: Any) -> bool:
    x = np.ravel(np.asarray(x))
    return x.size != np.unique(x).size


def _both_zero(x: Any, y: Any, *_: Any) -> bool:
    return bool(np.any((np.asarray(x) == 0) & (np.asarray(y) == 0)))


def _pow_covers(x: Any, y: Any = 0.0, *_: Any) -> bool:
    return _both_zero(x, y)


def _fmax_tie(x: Any, y: Any, *_: Any) -> bool:
    return bool(np.any(np.asarray(x) == np.asarray(y)))


def _xlogy_covers(x: Any, y: Any, *_: Any) -> bool:
    return bool(np.any((np.asarray(x) == 0) & (np.asarray(y) <= 0)))


def _median_covers(x: Any, *_: Any) -> bool:
    return np.asarray(x).size % 2 == 0 or _any_tie(x)


def registry() -> tuple[Divergence, ...]:
    """Every entry, in the documented order."""
    F = lambda: _t().nn.functional
    return (  # noqa: RUF005 - the porting entries follow the op entries
        Divergence(
            "abs-at-zero",
            "jnp.abs / torch.abs",
            "x = 0",
            "grad",
            (1.0,),
            (0.0,),
            "jax _src/lax/lax.py _abs_jvp_rule (select(x >= 0, t, -t)); jax#37820; "
            "torch tools/autograd/derivatives.yaml (abs: grad * self.sgn())",
            _a(0.0),
            jnp.abs,
            lambda x: _t().abs(x),
            L.abs_like_torch,
            cases=("elementwise/abs", "elementwise/abs_at_zero", "nn/l1_loss"),
            covers=_abs_covers,
        ),
        Divergence(
            "clip-at-bounds",
            "jnp.clip / torch.clamp",
            "x = min and x = max (here -1, 1)",
            "grad",
            (0.5, 0.5),
            (1.0, 1.0),
            "jax _src/numpy/lax_numpy.py clip (minimum/maximum split ties); "
            "torch derivatives.yaml clamp (grad where min <= x <= max); pytorch PR #7049",
            _a([-1.0, 1.0]),
            lambda x: jnp.clip(x, -1.0, 1.0),
            lambda x: _t().clamp(x, -1.0, 1.0),
            _named("clip_like_torch", lambda x: L.clip_like_torch(x, -1.0, 1.0)),
            cases=("elementwise/clip", "elementwise/clip_at_bounds"),
            covers=_any_abs_eq(1.0),
        ),
        Divergence(
            "lax-clamp-at-bounds",
            "lax.clamp / torch.clamp",
            "x = min and x = max (here -1, 1)",
            "grad",
            (0.0, 0.0),
            (1.0, 1.0),
            "jax _src/lax/lax.py clamp JVP (select(min < x < max)); torch derivatives.yaml clamp",
            _a([-1.0, 1.0]),
            lambda x: jax.lax.clamp(-1.0, x, 1.0),
            lambda x: _t().clamp(x, -1.0, 1.0),
            _named("clip_like_torch", lambda x: L.clip_like_torch(x, -1.0, 1.0)),
            cases=("elementwise/lax_clamp",),
            covers=_any_abs_eq(1.0),
        ),
        Divergence(
            "hardtanh-at-bounds",
            "jax.nn.hard_tanh / F.hardtanh",
            "x = -1 and x = 1",
            "grad",
            (1.0, 1.0),
            (0.0, 0.0),
            "jax _src/nn/functions.py hard_tanh (where(x > 1, 1, where(x < -1, -1, x))); "
            "torch derivatives.yaml hardtanh_backward (0 outside the open interval)",
            _a([-1.0, 1.0]),
            jax.nn.hard_tanh,
            lambda x: F().hardtanh(x),
            L.hardtanh_like_torch,
            cases=("nn/hardtanh",),
            covers=_any_abs_eq(1.0),
        ),
        Divergence(
            "leaky-relu-at-zero",
            "jax.nn.leaky_relu / F.leaky_relu",
            "x = 0",
            "grad",
            (1.0,),
            (0.01,),
            "jax _src/nn/functions.py leaky_relu (where(x >= 0, x, slope*x)); "
            "torch derivatives.yaml leaky_relu_backward (x > 0)",
            _a(0.0),
            jax.nn.leaky_relu,
            lambda x: F().leaky_relu(x),
            L.leaky_relu_like_torch,
            cases=("nn/leaky_relu",),
            covers=_any_eq(0.0),
        ),
        Divergence(
            "hardsigmoid-float64-slope",
            "jax.nn.hard_sigmoid / F.hardsigmoid",
            "float64, -3 < x < 3 (here x = 1)",
            "grad",
            (1 / 6,),
            (float(np.float32(1 / 6)),),
            "torch aten/src/ATen/native/cpu/Activation.cpp hardsigmoid_backward_kernel "
            "(const scalar_t one_sixth(1.0f / 6.0f): a float32 constant in float64)",
            _a(1.0),
            jax.nn.hard_sigmoid,
            lambda x: F().hardsigmoid(x),
            L.hard_sigmoid_like_torch,
            cases=("nn/hard_sigmoid",),
            covers=lambda x, *_: bool(np.any(np.abs(np.asarray(x)) < 3)),
            note="a 3e-8 relative difference, float64 only; float32 agrees",
        ),
        Divergence(
            "norm-at-zero",
            "jnp.linalg.norm / torch.linalg.vector_norm",
            "x = 0 (2-norm)",
            "grad",
            (_NAN,) * 3,
            (0.0,) * 3,
            "jax#21723, jax#4177; torch csrc/autograd/FunctionsManual.cpp norm_backward "
            "(masked_fill_(norm == 0, 0))",
            _a([0.0, 0.0, 0.0]),
            jnp.linalg.norm,
            lambda x: _t().linalg.vector_norm(x),
            L.norm_like_torch,
            cases=("reductions/norm2", "reductions/norm_fro", "reductions/norm2_at_zero"),
            covers=_zero_rows(None),
        ),
        Divergence(
            "norm1-at-zero",
            "jnp.linalg.norm(ord=1) / vector_norm(ord=1)",
            "x = 0 (1-norm)",
            "grad",
            (1.0,) * 3,
            (0.0,) * 3,
            "as abs-at-zero: jax abs JVP vs torch norm_backward (sgn for p = 1)",
            _a([0.0, 0.0, 0.0]),
            lambda x: jnp.linalg.norm(x, ord=1),
            lambda x: _t().linalg.vector_norm(x, ord=1),
            _named("norm_like_torch(ord=1)", lambda x: L.norm_like_torch(x, ord=1)),
            cases=("reductions/norm1",),
            covers=_any_eq(0.0),
        ),
        Divergence(
            "norminf-at-zero",
            "jnp.linalg.norm(ord=inf) / vector_norm(ord=inf)",
            "x = 0 (inf-norm)",
            "grad",
            (1 / 6,) * 3,
            (0.0,) * 3,
            "jax: max of abs splits the gradient over the tied zeros, each gets abs' 1; "
            "torch FunctionsManual.cpp norm_backward (sgn * tie mask / count)",
            _a([0.0, 0.0, 0.0]),
            lambda x: jnp.linalg.norm(x, ord=jnp.inf),
            lambda x: _t().linalg.vector_norm(x, ord=float("inf")),
            _named("norm_like_torch(ord=inf)", lambda x: L.norm_like_torch(x, ord=jnp.inf)),
            cases=("reductions/norm_inf",),
            covers=_any_eq(0.0),
        ),
        Divergence(
            "std-zero-spread",
            "jnp.std / torch.std",
            "all elements equal",
            "grad",
            (_NAN, _NAN),
            (0.0, 0.0),
            "jax: d sqrt(v)/dv = inf at v = 0, times 0 gives NaN; torch derivatives.yaml "
            "std_backward (masked_fill_(result == 0, 0))",
            _a([1.0, 1.0]),
            lambda x: jnp.std(x, ddof=1),
            lambda x: _t().std(x),
            L.std_like_torch,
            cases=("reductions/std_ddof1",),
            covers=_any_zero_or_constant,
        ),
        Divergence(
            "softplus-threshold",
            "jax.nn.softplus / F.softplus",
            "x = 20.5 (above threshold 20)",
            "grad",
            (0.9999999987498462,),
            (1.0,),
            "torch F.softplus docs (beta=1, threshold=20: linear above); "
            "jax _src/nn/functions.py softplus (logaddexp(x, 0))",
            _a(20.5),
            jax.nn.softplus,
            lambda x: F().softplus(x),
            L.softplus_like_torch,
            cases=("elementwise/softplus", "elementwise/softplus_above_threshold"),
            covers=lambda x, *_: bool(np.any(np.asarray(x) > 20)),
            note="with the defaults the value differs by log1p(exp(-x)) = 1.25e-9 at x = 20.5 "
            "(20.500000001250154 vs 20.5), float64 only; with other parameters the gap above "
            "the threshold is log1p(exp(-beta x)) / beta, up to log1p(exp(-threshold)) / beta "
            "just above it and visible in float32 (see softplus-threshold-beta)",
        ),
        Divergence(
            "softplus-threshold-beta",
            "jax.nn.softplus(beta x) / beta / F.softplus(x, beta=3, threshold=0.2)",
            "x = 2 (beta x = 6 > threshold 0.2)",
            "value",
            (2.0008252283792434,),
            (2.0,),
            "torch F.softplus docs (reverts to x where beta * x > threshold); "
            "jax _src/nn/functions.py softplus (logaddexp, no threshold)",
            _a(2.0),
            lambda x: jax.nn.softplus(3.0 * x) / 3.0,
            lambda x: F().softplus(x, beta=3, threshold=0.2),
            _named(
                "softplus_like_torch(x, beta=3, threshold=0.2)",
                lambda x: L.softplus_like_torch(x, beta=3.0, threshold=0.2),
            ),
            covers=lambda x, *_: bool(np.any(3 * np.asarray(x) > 0.2)),
            note="8.3e-4 here, 0.2 just above x = threshold / beta = 0.067, in float32 too; "
            "no catalog case uses non-default softplus parameters",
        ),
        Divergence(
            "gelu-default",
            "jax.nn.gelu / F.gelu",
            "defaults (here x = 1)",
            "value",
            (0.8411919906082768,),
            (0.8413447460685429,),
            "jax#4428; jax.nn.gelu(approximate=True) default; torch F.gelu(approximate='none')",
            _a(1.0),
            jax.nn.gelu,
            lambda x: F().gelu(x),
            L.gelu_like_torch,
            cases=("nn/gelu_default",),
            covers=lambda *_: True,
            note="pass approximate=False (JAX) or approximate='tanh' (torch) to agree",
        ),
        Divergence(
            "var-default-ddof",
            "jnp.var / torch.var",
            "defaults (here [1, 2, 4])",
            "value",
            (14 / 9,),
            (7 / 3,),
            "jnp.var ddof=0 default; torch.var docs (correction=1 default)",
            _a([1.0, 2.0, 4.0]),
            jnp.var,
            lambda x: _t().var(x),
            L.var_like_torch,
            cases=("reductions/var_default",),
            covers=lambda *_: True,
        ),
        Divergence(
            "std-default-ddof",
            "jnp.std / torch.std",
            "defaults (here [1, 2, 4])",
            "value",
            (float(np.sqrt(14 / 9)),),
            (float(np.sqrt(7 / 3)),),
            "jnp.std ddof=0 default; torch.std docs (correction=1 default)",
            _a([1.0, 2.0, 4.0]),
            jnp.std,
            lambda x: _t().std(x),
            L.std_like_torch,
            cases=("reductions/std_default",),
            covers=lambda *_: True,
        ),
        Divergence(
            "pow-zero-exponent-at-zero",
            "x ** 0.0 (jnp.power / torch.pow)",
            "x = 0 with a float exponent 0.0",
            "grad",
            (_NAN,),
            (0.0,),
            "jax _src/lax/lax.py _pow_jvp_lhs (y * x**(y-1) = 0 * inf); "
            "torch FunctionsManual.cpp pow_backward (masked where exponent == 0)",
            _a(0.0),
            lambda x: x**0.0,
            lambda x: x**0.0,
            _named("pow_like_torch(x, 0.0)", lambda x: L.pow_like_torch(x, 0.0)),
            cases=("elementwise/pow_tensor", "elementwise/pow_zero_at_zero"),
            covers=_pow_covers,
            note="an integer exponent (x ** 0) gives 0 in both",
        ),
        Divergence(
            "pow-zero-base-negative-exponent",
            "jnp.power / torch.pow",
            "d/dy at x = 0, y < 0 (here y = -0.5)",
            "grad",
            (_NAN,),
            (-_INF,),
            "jax _src/lax/lax.py _pow_jvp_rhs; torch FunctionsManual.cpp "
            "pow_backward_exponent (result * log(x), masked only where x == 0 and y >= 0)",
            _a(0.0, -0.5),
            jnp.power,
            lambda x, y: _t().pow(x, y),
            L.pow_like_torch,
            wrt=1,
            cases=("elementwise/pow_tensor",),
            covers=lambda x, y, *_: bool(np.any((np.asarray(x) == 0) & (np.asarray(y) < 0))),
        ),
        Divergence(
            "max-dim-ties",
            "jnp.max(axis) / torch.max(dim).values",
            "tied maxima along the dim",
            "grad",
            (0.5, 0.5, 0.0),
            (1.0, 0.0, 0.0),
            "torch.max docs (dim: gradient to the returned index; amax splits evenly); "
            "jax _src/lax/lax.py reduce_max JVP (even split)",
            _a([[1.0, 1.0, 0.0]]),
            lambda x: jnp.max(x, axis=1),
            lambda x: _t().max(x, dim=1).values,
            _named("max_like_torch(x, axis)", lambda x: L.max_like_torch(x, axis=1)),
            cases=("reductions/max_dim", "reductions/max_dim_ties"),
            covers=_ties_along(-1, "max"),
            note="torch.amax and torch.max() without dim split evenly, like JAX",
        ),
        Divergence(
            "min-dim-ties",
            "jnp.min(axis) / torch.min(dim).values",
            "tied minima along the dim",
            "grad",
            (0.5, 0.5, 0.0),
            (1.0, 0.0, 0.0),
            "torch.min docs (dim: gradient to the returned index)",
            _a([[0.0, 0.0, 1.0]]),
            lambda x: jnp.min(x, axis=1),
            lambda x: _t().min(x, dim=1).values,
            _named("min_like_torch(x, axis)", lambda x: L.min_like_torch(x, axis=1)),
            cases=("reductions/min_dim",),
            covers=_ties_along(-1, "min"),
        ),
        Divergence(
            "atan2-origin",
            "jnp.arctan2 / torch.atan2",
            "(y, x) = (0, 0)",
            "grad",
            (_NAN,),
            (0.0,),
            "pytorch#98276 (reported NaN; torch 2.13 masks to 0: atan2_backward); "
            "jax _src/lax/lax.py atan2 JVP (x / (x^2 + y^2))",
            _a(0.0, 0.0),
            jnp.arctan2,
            lambda y, x: _t().atan2(y, x),
            L.atan2_like_torch,
            cases=("elementwise/atan2", "elementwise/atan2_origin"),
            covers=_both_zero,
            note="the research notes said torch gives NaN; measured here it gives 0. torch's "
            "forward mode (JVP) there is still NaN: only its backward is masked",
        ),
        Divergence(
            "hypot-origin",
            "jnp.hypot / torch.hypot",
            "(x, y) = (0, 0)",
            "grad",
            (0.5,),
            (_NAN,),
            "jax _src/numpy/ufuncs.py hypot (custom safe form); "
            "torch derivatives.yaml hypot (grad * self / result)",
            _a(0.0, 0.0),
            jnp.hypot,
            lambda x, y: _t().hypot(x, y),
            None,
            cases=("elementwise/hypot",),
            covers=_both_zero,
            note="no match-torch variant: PyTorch's value is NaN, JAX's a finite subgradient",
        ),
        Divergence(
            "xlogy-zero",
            "jax.scipy.special.xlogy / torch.xlogy",
            "x = 0 with y <= 0 (here 0)",
            "grad",
            (-_INF,),
            (0.0,),
            "jax _src/scipy/special.py xlogy JVP (log(y)); torch derivatives.yaml xlogy "
            "(masked where x == 0 and y <= 0)",
            _a(0.0, 0.0),
            jax.scipy.special.xlogy,
            lambda x, y: _t().xlogy(x, y),
            L.xlogy_like_torch,
            cases=("elementwise/xlogy",),
            covers=_xlogy_covers,
        ),
        Divergence(
            "fmax-ties",
            "jnp.fmax / torch.fmax",
            "x == y",
            "grad",
            (0.0,),
            (1.0,),
            "jax _src/numpy/ufuncs.py fmax (where(x > y | isnan(y), x, y)); "
            "torch derivatives.yaml fmax (x >= y | isnan(y))",
            _a(1.0, 1.0),
            jnp.fmax,
            lambda x, y: _t().fmax(x, y),
            L.fmax_like_torch,
            cases=("elementwise/fmax",),
            covers=_fmax_tie,
            note="torch's forward mode (JVP) at a tie follows y, its backward x; "
            "jnp.maximum and torch.maximum agree (0.5/0.5)",
        ),
        Divergence(
            "median-even-count",
            "jnp.median / torch.median",
            "an even number of elements",
            "value",
            (2.5,),
            (2.0,),
            "torch.median docs (the lower of the two middle values); numpy/jnp.median (mean)",
            _a([1.0, 3.0, 2.0, 4.0]),
            jnp.median,
            lambda x: _t().median(x),
            L.median_like_torch,
            cases=("reductions/median",),
            covers=_median_covers,
        ),
        Divergence(
            "median-ties",
            "jnp.median / torch.median",
            "elements tied at the median",
            "grad",
            (0.0, 1.0, 0.0),
            (0.5, 0.5, 0.0),
            "torch derivatives.yaml median (evenly_distribute_backward); jnp.median (sort)",
            _a([1.0, 1.0, 2.0]),
            jnp.median,
            lambda x: _t().median(x),
            L.median_like_torch,
            cases=("reductions/median",),
            covers=_median_covers,
        ),
        Divergence(
            "cummax-ties",
            "lax.cummax / torch.cummax",
            "tied running maxima",
            "grad",
            (2.0, 1.0, 0.0),
            (1.0, 2.0, 0.0),
            "torch.cummax (index of the last tied maximum); jax lax.cummax JVP (first)",
            _a([1.0, 1.0, 0.0]),
            jax.lax.cummax,
            lambda x: _t().cummax(x, 0).values,
            None,
            cases=("reductions/cummax",),
            covers=_any_tie,
            note="no match-torch variant yet",
        ),
        Divergence(
            "digamma-grad-negative",
            "jax.scipy.special.digamma / torch.special.digamma",
            "derivative at x = -8.5 (x below about -7)",
            "grad",
            (6.794955463355337,),
            (9.75860711261962,),
            "jax#37635, jax#11481: jax _src/scipy/special.py polygamma = (-1)^(n+1) n! "
            "zeta(n+1, x), a Hurwitz zeta series with no reflection for x < 0; torch "
            "aten/src/ATen/native/Math.h calc_trigamma (reflection for x < 0.5); "
            "mpmath.polygamma(1, -8.5) = 9.75860711262026",
            _a(-8.5),
            jax.scipy.special.digamma,
            lambda x: _t().special.digamma(x),
            G.digamma_like_torch,
            covers=lambda x, *_: bool(np.any(np.asarray(x) < -6.5)),
            rtol=1e-9,
            note="measured against mpmath: JAX's trigamma is within 1e-10 for x >= -6.5, "
            "7e-7 off at -7.5, 30% at -8.5, 1e11 relative at -9.5 and about 0 (relative "
            "error 1) below -12; torch within 5e-10 everywhere; the value (digamma itself) "
            "agrees; no catalog case draws x < -6.5",
        ),
        Divergence(
            "polygamma-negative",
            "jax.scipy.special.polygamma(5, x) / torch.special.polygamma(5, x)",
            "x = -8.5 (x below about -7, every n >= 1)",
            "value",
            (-282950.67022517434,),
            (15382.226696912101,),
            "jax#37635, jax#11481 (polygamma: the zeta series, no reflection for x < 0); "
            "torch aten/src/ATen/native/Math.h calc_polygamma (zeta with reflection); "
            "mpmath.polygamma(5, -8.5) = 15382.2266969121",
            _a(-8.5),
            lambda x: jax.scipy.special.polygamma(5, x),
            lambda x: _t().special.polygamma(5, x),
            _named("polygamma_like_torch(5, x)", lambda x: G.polygamma_like_torch(5, x)),
            covers=lambda x, *_: bool(np.any(np.asarray(x) < -6.5)),
            rtol=1e-9,
            note="at n = 5 JAX is 6e-6 off at x = -7.5, wrong in sign here and by 1e15 "
            "relative at -9.5 (torch: 2e-16); the reported 8% sits between -7.5 and -8.5",
        ),
        Divergence(
            "logcumsumexp-jvp",
            "lax.cumlogsumexp / torch.logcumsumexp (forward mode)",
            "JVP at x = [-17, 0] (an element 17 below the maximum), tangent ones",
            "jvp",
            (1.0, 1.0),
            (0.9999975845105593, 0.9999999999999001),
            "torch csrc/autograd/FunctionsManual.cpp logcumsumexp_jvp (divides by "
            "cumsum(exp(x - max)) plus a 1e-13 stabiliser); its backward "
            "(logcumsumexp_backward) is exact and equals JAX's VJP",
            _a([-17.0, 0.0]),
            lambda x: jax.lax.cumlogsumexp(x),
            lambda x: _t().logcumsumexp(x, 0),
            None,
            covers=lambda x, *_: bool(np.ptp(np.asarray(x)) > 10) if np.size(x) else False,
            note="torch's JVP is off by 1e-13 / sum(exp(x - max)) relative: 2.4e-6 here, 0.74 "
            "at 30 below the maximum, 4e-11 for x in [-3, 3]; no match-torch variant, "
            "since no JAX function can match torch's JVP and its (exact) VJP together",
        ),
        Divergence(
            "cholesky-nonsymmetric-tangent",
            "jnp.linalg.cholesky / torch.linalg.cholesky (forward mode)",
            "JVP at [[4, 2], [2, 5]] along the non-symmetric tangent [[0, 1], [0, 0]]",
            "jvp",
            (0.0, 0.0, 0.25, -0.125),
            (0.0, 0.0, 0.0, -0.125),
            "jax _src/lax/linalg.py _cholesky_jvp_rule (symmetrises the tangent: "
            "(dA + dA^H) / 2); torch FunctionsManual.cpp cholesky_jvp (uses dA as given) while "
            "its cholesky_backward returns a symmetric gradient, so torch's JVP is not the "
            "transpose of its VJP off the symmetric matrices",
            _a([[4.0, 2.0], [2.0, 5.0]]),
            jnp.linalg.cholesky,
            lambda a: _t().linalg.cholesky(a),
            None,
            tangent=np.array([[0.0, 1.0], [0.0, 0.0]]),
            note="both agree on symmetric tangents, the op's domain: compare with "
            "compare(..., tangent=lambda a: ((a + a.T) / 2,)); VJPs agree; no match-torch "
            "variant (torch's JVP and VJP are not one linear map)",
        ),
        Divergence(
            "complex-grad-conjugate",
            "jax.grad / torch backward on complex inputs",
            "real loss |z|^2 at z = 1+2j",
            "grad",
            (2 - 4j,),
            (2 + 4j,),
            "jax autodiff cookbook (complex: grad is conj of dL/dz*); torch notes/autograd.rst "
            "(complex autograd returns dL/dz*)",
            _a(1 + 2j),
            lambda z: jnp.abs(z) ** 2,
            lambda z: z.abs() ** 2,
            None,
            note="take jnp.conj of JAX's gradient to get PyTorch's; no op variant applies",
        ),
    ) + _porting_entries()


# ---- model-porting conventions (funcdiff.parity.compare_model's convention check) -----------
# Each entry is one layer-level convention measured at a tiny point: JAX/Flax/Equinox with its
# default (or the setting a straight port copies) against torch's layer. compare_model's
# findings name these entries. flax and equinox are imported when an entry is measured.


def _nnx() -> Any:
    from flax import nnx

    return nnx


def _f64(t: Any) -> Any:
    return _t().float64 if t is None else t


def _same_conv(x: Any) -> Any:
    w = jnp.ones((1, 1, 3), x.dtype)
    return jax.lax.conv_general_dilated(x[None, None], w, (2,), "SAME").ravel()


def _flax_layer_norm(x: Any) -> Any:
    nnx = _nnx()
    ln = nnx.LayerNorm(x.shape[-1], use_bias=False, use_scale=False, rngs=nnx.Rngs(0))
    return ln(x)


def _flax_bn_stat(x: Any, stat: str, momentum: float) -> Any:
    nnx = _nnx()
    bn = nnx.BatchNorm(
        1,
        momentum=momentum,
        use_running_average=False,
        dtype=x.dtype,
        param_dtype=x.dtype,
        rngs=nnx.Rngs(0),
    )
    with warnings.catch_warnings():  # flax writes float64 batch stats into float32 ones
        warnings.simplefilter("ignore", FutureWarning)
        bn(x[:, None])
    return getattr(bn, stat)[...].astype(x.dtype)


def _torch_bn_stat(x: Any, stat: str, momentum: float) -> Any:
    bn = _t().nn.BatchNorm1d(1, momentum=momentum, dtype=x.dtype)
    bn.train()
    bn(x[:, None])
    return getattr(bn, stat).detach()


def _flax_lstm_hidden_bias_only(x: Any) -> Any:
    nnx = _nnx()
    cell = nnx.LSTMCell(1, 1, param_dtype=x.dtype, dtype=x.dtype, rngs=nnx.Rngs(0))
    for n in ("ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"):
        getattr(cell, n).kernel[...] = jnp.zeros((1, 1), x.dtype)
    for n in ("hi", "hf", "hg", "ho"):
        getattr(cell, n).bias[...] = jnp.ones(1, x.dtype)  # torch's bias_hh; bias_ih dropped
    carry = (jnp.zeros((1, 1), x.dtype), jnp.zeros((1, 1), x.dtype))
    return cell(carry, x[None, :1])[1].ravel()


def _torch_lstm_cell(x: Any, b_ih: Any, b_hh: Any) -> Any:
    torch = _t()
    cell = torch.nn.LSTMCell(1, 1, dtype=x.dtype)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias_ih.copy_(torch.tensor(b_ih, dtype=x.dtype))
        cell.bias_hh.copy_(torch.tensor(b_hh, dtype=x.dtype))
    return cell(x[None, :1])[0].detach().ravel()


def _lstm_igfo(x: Any) -> Any:
    """One LSTM step reading torch's fused bias (0, 1, 2, 3) in haiku's gate order i, g, f, o."""
    i, g, _, o = jnp.arange(4.0, dtype=x.dtype) + 0 * x[0]  # f unused: the cell starts at 0
    c = jax.nn.sigmoid(i) * jnp.tanh(g)
    return (jax.nn.sigmoid(o) * jnp.tanh(c))[None]


def _torch_mha_padding_mask(kv: Any) -> Any:
    torch = _t()
    mha = torch.nn.MultiheadAttention(1, 1, bias=False, batch_first=True, dtype=kv.dtype)
    with torch.no_grad():
        mha.in_proj_weight.fill_(1.0)
        mha.out_proj.weight.fill_(1.0)
    q = torch.ones(1, 1, 1, dtype=kv.dtype)
    k = kv.reshape(1, 2, 1)
    mask = torch.tensor([[True, False]])  # the same boolean mask as the JAX side
    return mha(q, k, k, key_padding_mask=mask, need_weights=False)[0].detach().ravel()


def _jax_attention_mask(kv: Any) -> Any:
    q = jnp.ones((1, 1, 1, 1), kv.dtype)
    k = kv.reshape(1, 2, 1, 1)
    mask = jnp.array([True, False]).reshape(1, 1, 1, 2)
    return jax.nn.dot_product_attention(q, k, k, mask=mask).ravel()


def _jax_sdpa(kv: Any) -> Any:
    q = jnp.ones((1, 1, 1, 1), kv.dtype)
    k = kv[:2].reshape(1, 2, 1, 1)
    v = kv[2:].reshape(1, 2, 1, 1)
    return jax.nn.dot_product_attention(q, k, v).ravel()


def _torch_sdpa(kv: Any) -> Any:
    F = _t().nn.functional
    q = kv.new_ones(1, 1, 1, 1)
    k, v = kv[:2].reshape(1, 1, 2, 1), kv[2:].reshape(1, 1, 2, 1)
    return F.scaled_dot_product_attention(q, k, v).ravel()


def _eqx_ema_second_step(x: Any) -> Any:
    import equinox as eqx

    bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(1, "batch", mode="ema", dtype=x.dtype)
    f = jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    _, state = f(x[:, None], state)
    return f(2.0 * x[:, None], state)[0].ravel()


def _torch_bn_second_step(x: Any) -> Any:
    bn = _t().nn.BatchNorm1d(1, dtype=x.dtype)
    bn.train()
    bn(x[:, None])
    return bn(2.0 * x[:, None]).detach().ravel()


def _porting_entries() -> tuple[Divergence, ...]:
    F = lambda: _t().nn.functional
    port = "a model port (funcdiff.parity.compare_model's convention check)"
    return (
        Divergence(
            "strided-same-padding",
            "lax.conv 'SAME' (flax nnx.Conv default) / torch conv padding=1",
            "kernel 3, stride 2, x = [1, 2, 3, 4]",
            "value",
            (6.0, 7.0),
            (3.0, 9.0),
            "google/flax#2993, pytorch#3867: strided 'SAME' pads (0, 1), torch pads (1, 1)",
            _a([1.0, 2.0, 3.0, 4.0]),
            _same_conv,
            lambda x: F().conv1d(x[None, None], x.new_ones(1, 1, 3), stride=2, padding=1).ravel(),
            None,
            note=f"{port}: pass padding=((1, 1),) (explicit, symmetric) to the JAX conv",
        ),
        Divergence(
            "flax-norm-epsilon",
            "nnx.LayerNorm / torch LayerNorm (also GroupNorm, RMSNorm)",
            "defaults, x = [0, 0.002] (variance 1e-6, near the epsilon)",
            "value",
            (-0.7071067811865476, 0.7071067811865476),
            (-0.3015113445777636, 0.3015113445777636),
            "flax nnx.LayerNorm epsilon=1e-6; torch nn.LayerNorm eps=1e-5",
            _a([0.0, 0.002]),
            _flax_layer_norm,
            lambda x: F().layer_norm(x, (2,)),
            None,
            note=f"{port}: pass epsilon=1e-5 to the flax norm",
        ),
        Divergence(
            "batchnorm-momentum",
            "nnx.BatchNorm(momentum=m) / torch BatchNorm(momentum=m)",
            "one training step, m = 0.1, batch [1, 3]: the running mean",
            "value",
            (1.7999999523162842,),
            (0.2,),
            "pytorch/examples#289; flax: new = m*old + (1-m)*batch, torch: new = (1-m)*old + "
            "m*batch",
            _a([1.0, 3.0]),
            lambda x: _flax_bn_stat(x, "mean", 0.1),
            lambda x: _torch_bn_stat(x, "running_mean", 0.1),
            None,
            note=f"{port}: torch momentum m is flax/equinox momentum 1 - m (0.1 -> 0.9)",
        ),
        Divergence(
            "batchnorm-running-var",
            "nnx.BatchNorm / torch BatchNorm running variance",
            "one training step with the batch's own statistic kept (flax m = 0, torch m = 1), "
            "batch [1, 3]",
            "value",
            (1.0,),
            (2.0,),
            "pytorch#60528 (torch stores the unbiased batch variance); flax stores the biased",
            _a([1.0, 3.0]),
            lambda x: _flax_bn_stat(x, "var", 0.0),
            lambda x: _torch_bn_stat(x, "running_var", 1.0),
            None,
            note=f"{port}: a BatchNorm that updates var with n/(n-1) times the batch variance",
        ),
        Divergence(
            "flax-batchnorm-float32-stats",
            "nnx.BatchNorm (float64 params) / torch BatchNorm float64",
            "running mean after one step (flax m = 0, torch m = 1), batch [0.1, 0.3]",
            "value",
            (0.20000000298023224,),
            (0.2,),
            "flax nnx.BatchNorm keeps mean/var in float32 whatever param_dtype (measured)",
            _a([0.1, 0.3]),
            lambda x: _flax_bn_stat(x, "mean", 0.0),
            lambda x: _torch_bn_stat(x, "running_mean", 1.0),
            None,
            note=f"{port}: float64 ports need a BatchNorm whose statistics follow the input dtype",
        ),
        Divergence(
            "avg-pool-count-include-pad",
            "nnx.avg_pool / torch avg_pool1d(count_include_pad=False)",
            "window 3, stride 1, padding 1, x = [1, 2, 3]",
            "value",
            (1.0, 2.0, 1.6666666666666665),
            (1.5, 2.0, 2.5),
            "flax avg_pool count_include_pad=True by default; torch's argument (measured 0.185 "
            "on a 2-D case)",
            _a([1.0, 2.0, 3.0]),
            lambda x: _nnx().avg_pool(x[None, :, None], (3,), (1,), ((1, 1),)).ravel(),
            lambda x: F().avg_pool1d(x[None, None], 3, 1, 1, count_include_pad=False).ravel(),
            None,
            note=f"{port}: pass count_include_pad=False to the flax pooling",
        ),
        Divergence(
            "pool-ceil-mode",
            "nnx.max_pool / torch max_pool1d(ceil_mode=True)",
            "window 2, stride 2, x of length 5: the number of output windows",
            "value",
            (2.0,),
            (3.0,),
            "torch ceil_mode keeps a last partial window; flax pooling has no ceil mode",
            _a([1.0, 2.0, 3.0, 4.0, 5.0]),
            lambda x: jnp.asarray(
                [_nnx().max_pool(x[None, :, None], (2,), (2,)).shape[1]], x.dtype
            ),
            lambda x: x.new_tensor([F().max_pool1d(x[None, None], 2, 2, ceil_mode=True).shape[-1]]),
            None,
            note=f"{port}: pad the input on the right by stride - 1 (-inf for max pooling)",
        ),
        Divergence(
            "attention-mask-polarity",
            "jax.nn.dot_product_attention(mask=m) / torch MultiheadAttention(key_padding_mask=m)",
            "the same boolean mask [True, False] over keys/values [1, 2]",
            "value",
            (1.0,),
            (2.0,),
            "flax/jax: True = attend; torch MHA masks: True = masked out (pytorch#120668)",
            _a([1.0, 2.0]),
            _jax_attention_mask,
            _torch_mha_padding_mask,
            None,
            note=f"{port}: pass ~mask to the JAX attention",
        ),
        Divergence(
            "dot-product-attention-float32-softmax",
            "jax.nn.dot_product_attention / F.scaled_dot_product_attention, float64",
            "q = 1, keys [0.1, 0.7], values [0.3, 0.9]",
            "value",
            (0.6873937726020813,),
            (0.6873937837354772,),
            "jax.nn.dot_product_attention computes the softmax in float32 (jax source, measured "
            "4e-8 off torch in float64)",
            _a([0.1, 0.7, 0.3, 0.9]),
            _jax_sdpa,
            _torch_sdpa,
            None,
            note=f"{port}: an attention_fn that stays in the input dtype (nnx.MultiHeadAttention)",
        ),
        Divergence(
            "resize-antialias",
            "jax.image.resize(method='linear') / torch F.interpolate(mode='bilinear')",
            "defaults, downsampling [1, 2, 4, 8] to 2 entries",
            "value",
            (1.857142857142857, 5.428571428571429),
            (1.5, 6.0),
            "jax.image.resize antialias=True by default, torch F.interpolate antialias=False "
            "(both docs); jax#11206, flax#2210; sayakpaul/cmmd-pytorch#4 (a port that differed)",
            _a([1.0, 2.0, 4.0, 8.0]),
            lambda x: jax.image.resize(x, (2,), "linear"),
            lambda x: F().interpolate(x[None, None, None], size=(1, 2), mode="bilinear").ravel(),
            _named(
                "jax.image.resize(x, (2,), 'linear', antialias=False)",
                lambda x: jax.image.resize(x, (2,), "linear", antialias=False),
            ),
            note=f"{port}: pass antialias=False to jax.image.resize (or antialias=True to "
            "F.interpolate); upsampling is not affected",
        ),
        Divergence(
            "rnn-input-bias",
            "nnx.LSTMCell / torch LSTMCell",
            "zero weights, torch bias_ih = bias_hh = 1, JAX given torch's bias_hh only",
            "value",
            (0.3696063529357058,),
            (0.6082834181835157,),
            "google/flax#3746: nnx.LSTMCell input Linears have no bias; torch has two",
            _a([0.5]),
            _flax_lstm_hidden_bias_only,
            lambda x: _torch_lstm_cell(x, [1.0] * 4, [1.0] * 4),
            None,
            note=f"{port}: set the JAX hidden bias to bias_ih + bias_hh",
        ),
        Divergence(
            "rnn-gate-order",
            "an LSTM reading gates i, g, f, o (haiku's order) / torch LSTMCell (i, f, g, o)",
            "zero weights, torch bias_ih = [0, 1, 2, 3], one step",
            "value",
            (0.34616494652962415,),
            (0.42661502586842354,),
            "torch nn.LSTM docs (gates i, f, g, o); dm-haiku hk.LSTM splits i, g, f, o",
            _a([0.5]),
            _lstm_igfo,
            lambda x: _torch_lstm_cell(x, [0.0, 1.0, 2.0, 3.0], [0.0] * 4),
            None,
            note=f"{port}: split torch's fused weights in torch's gate order",
        ),
        Divergence(
            "equinox-batchnorm-ema",
            "eqx.nn.BatchNorm(mode='ema') / torch BatchNorm, training mode",
            "second training step on batch 2 * [1, 3] (the first was [1, 3])",
            "value",
            (-0.019706489900945735, 3.9215914902881974),
            (-0.9999987500023437, 0.9999987500023437),
            "equinox#659: mode='ema' normalises training batches with running averages",
            _a([1.0, 3.0]),
            _eqx_ema_second_step,
            _torch_bn_second_step,
            None,
            note=f"{port}: eqx.nn.BatchNorm(..., mode='batch') matches torch (5e-7, measured)",
        ),
    )

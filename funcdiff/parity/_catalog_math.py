"""Catalog cases: the tutorial, elementwise maths, reductions and linear algebra.

Each entry is ``(name, jax_fn, torch_fn, make_args[, options])``; :mod:`._catalog` turns them
into :class:`~funcdiff.parity.Case` records. Torch is imported only when a twin runs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff import seed
from funcdiff.parity._torch import require_torch

Entry = tuple[Any, ...]


# ---- torch, lazily ---------------------------------------------------------------------------


def T() -> Any:
    """``torch``, imported on first use."""
    return require_torch()


def F() -> Any:
    """``torch.nn.functional``."""
    return require_torch().nn.functional


# ---- inputs ----------------------------------------------------------------------------------


def normal(rng: np.random.Generator, dt: np.dtype, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(dt)


def uniform(
    rng: np.random.Generator, dt: np.dtype, lo: float, hi: float, *shape: int
) -> np.ndarray:
    return rng.uniform(lo, hi, shape).astype(dt)


def away(
    rng: np.random.Generator,
    dt: np.dtype,
    *shape: int,
    points: tuple[float, ...] = (0.0,),
    margin: float = 0.2,
    scale: float = 2.0,
) -> np.ndarray:
    """Uniform on ``[-scale, scale]`` but at least ``margin`` from each of ``points``."""
    x = rng.uniform(-scale, scale, shape)
    for p in points:
        near = np.abs(x - p) < margin
        x = np.where(near, p + np.where(x >= p, margin, -margin) * 1.5, x)
    return x.astype(dt)


def distinct(rng: np.random.Generator, dt: np.dtype, *shape: int, gap: float = 0.1) -> np.ndarray:
    """Values at least ``gap`` apart, shuffled (no ties anywhere)."""
    n = int(np.prod(shape))
    v = np.arange(n) * gap * 3 + rng.uniform(0, gap, n) - n * gap * 1.5
    return rng.permutation(v).reshape(shape).astype(dt)


def spd(rng: np.random.Generator, dt: np.dtype, n: int) -> np.ndarray:
    """A well-conditioned symmetric positive definite matrix."""
    b = rng.standard_normal((n, n)) * 0.5
    return (b @ b.T + n * np.eye(n)).astype(dt)


def well_conditioned(rng: np.random.Generator, dt: np.dtype, n: int) -> np.ndarray:
    return (np.eye(n) * 2.0 + 0.3 * rng.standard_normal((n, n))).astype(dt)


def fixed(*arrays: Any) -> Any:
    """A ``make_args`` returning these values (cast to the dtype)."""
    return lambda rng, dt: tuple(np.asarray(a, dtype=dt) for a in arrays)


def one(gen: Any) -> Any:
    """Wraps a one-array generator ``gen(rng, dt)`` as ``make_args``."""
    return lambda rng, dt: (gen(rng, dt),)


KINK = ("kinks", "domain:real")
KINK_POS = ("kinks", "domain:positive")
KINK_UNIT = ("kinks", "domain:unit")
KINK_ROWS = ("kinks", "domain:rows")


# ---- the tutorial ----------------------------------------------------------------------------


def _t_f(x: Any) -> Any:
    return T().log(x[0] * x[1]), T().sin(x[1])


def _reg_loss_jax(params: dict[str, Any], x: Any, y: Any) -> Any:
    return jnp.mean((params["w"] * x + params["b"] - y) ** 2)


def _reg_loss_torch(params: dict[str, Any], x: Any, y: Any) -> Any:
    return ((params["w"] * x + params["b"] - y) ** 2).mean()


def _reg_data(rng: np.random.Generator, dt: np.dtype) -> tuple[Any, ...]:
    x = rng.standard_normal(16)
    y = 2 + x + 0.5 * rng.standard_normal(16)
    params = {"b": np.asarray(0.3, dt), "w": np.asarray(0.7, dt)}
    return params, x.astype(dt), y.astype(dt)


def tutorial() -> list[Entry]:
    point = fixed(seed.POINT)
    return [
        ("tutorial/f", seed.f, _t_f, point),
        ("tutorial/g", seed.g, lambda y: y[0] * y[1], point),
        (
            "tutorial/composite",
            seed.composite,
            lambda x: T().log(x[0] * x[1]) * T().sin(x[1]),
            point,
        ),
        (
            "tutorial/composite_random",
            seed.composite,
            lambda x: T().log(x[0] * x[1]) * T().sin(x[1]),
            one(lambda r, d: uniform(r, d, 0.3, 2, 2)),
        ),
        ("tutorial/regression_loss", _reg_loss_jax, _reg_loss_torch, _reg_data),
    ]


# ---- elementwise -----------------------------------------------------------------------------


def _unary(name: str, jf: Any, tf: Any, gen: Any, tags: tuple[str, ...] = KINK) -> Entry:
    return (f"elementwise/{name}", jf, tf, one(gen), {"tags": tags})


def _real(r: np.random.Generator, d: np.dtype) -> np.ndarray:
    return normal(r, d, 3, 4)


def _pos(r: np.random.Generator, d: np.dtype) -> np.ndarray:
    return uniform(r, d, 0.3, 3.0, 3, 4)


def _unit(r: np.random.Generator, d: np.dtype) -> np.ndarray:
    return uniform(r, d, -0.9, 0.9, 3, 4)


def _nonzero(r: np.random.Generator, d: np.dtype) -> np.ndarray:
    return away(r, d, 3, 4)


def _pair(gen_x: Any, gen_y: Any) -> Any:
    return lambda r, d: (gen_x(r, d), gen_y(r, d))


def _where_sign_jax(x: Any) -> Any:
    return jnp.where(x > 0, x**2, -0.5 * x)


def _where_sign_torch(x: Any) -> Any:
    return T().where(x > 0, x**2, -0.5 * x)


def elementwise() -> list[Entry]:
    sc = jax.scipy.special
    return [
        _unary("exp", jnp.exp, lambda x: T().exp(x), _real),
        _unary("log", jnp.log, lambda x: T().log(x), _pos, KINK_POS),
        _unary(
            "log1p", jnp.log1p, lambda x: T().log1p(x), lambda r, d: uniform(r, d, -0.5, 2.0, 3, 4)
        ),
        _unary("expm1", jnp.expm1, lambda x: T().expm1(x), _real),
        _unary("sin", jnp.sin, lambda x: T().sin(x), _real),
        _unary("cos", jnp.cos, lambda x: T().cos(x), _real),
        _unary("tan", jnp.tan, lambda x: T().tan(x), lambda r, d: uniform(r, d, -1.2, 1.2, 3, 4)),
        _unary("sinh", jnp.sinh, lambda x: T().sinh(x), _real),
        _unary("cosh", jnp.cosh, lambda x: T().cosh(x), _real),
        _unary("tanh", jnp.tanh, lambda x: T().tanh(x), _real),
        _unary("arcsin", jnp.arcsin, lambda x: T().asin(x), _unit, KINK_UNIT),
        _unary("arccos", jnp.arccos, lambda x: T().acos(x), _unit, KINK_UNIT),
        _unary("arctan", jnp.arctan, lambda x: T().atan(x), _real),
        _unary("arcsinh", jnp.arcsinh, lambda x: T().asinh(x), _real),
        _unary(
            "arccosh",
            jnp.arccosh,
            lambda x: T().acosh(x),
            lambda r, d: uniform(r, d, 1.2, 3.0, 3, 4),
            (),
        ),
        _unary("arctanh", jnp.arctanh, lambda x: T().atanh(x), _unit, KINK_UNIT),
        _unary("sigmoid", jax.nn.sigmoid, lambda x: T().sigmoid(x), _real),
        _unary(
            "softplus",
            jax.nn.softplus,
            lambda x: F().softplus(x),
            lambda r, d: normal(r, d, 3, 4, scale=3.0),
        ),
        _unary("log_sigmoid", jax.nn.log_sigmoid, lambda x: F().logsigmoid(x), _real),
        _unary("erf", sc.erf, lambda x: T().erf(x), _real),
        _unary("erfc", sc.erfc, lambda x: T().erfc(x), _real),
        _unary("sqrt", jnp.sqrt, lambda x: T().sqrt(x), _pos, KINK_POS),
        _unary("rsqrt", jax.lax.rsqrt, lambda x: T().rsqrt(x), _pos, KINK_POS),
        _unary("reciprocal", jnp.reciprocal, lambda x: T().reciprocal(x), _nonzero),
        _unary("square", jnp.square, lambda x: T().square(x), _real),
        _unary("pow_int", lambda x: x**3, lambda x: x**3, _real),
        _unary("pow_neg_int", lambda x: x**-2, lambda x: x**-2, _pos),
        _unary("pow_float", lambda x: x**2.5, lambda x: x**2.5, _pos, KINK_POS),
        _unary("pow_half", lambda x: x**0.5, lambda x: x**0.5, _pos, KINK_POS),
        (
            "elementwise/pow_tensor",
            jnp.power,
            lambda x, y: T().pow(x, y),
            _pair(_pos, _real),
            {"tags": ("kinks", "domain:positive,real")},
        ),
        (
            "elementwise/pow_zero_at_zero",
            lambda x: x**0.0,
            lambda x: x**0.0,
            fixed([0.0, 1.0, 2.0]),
            {"divergence": "pow-zero-exponent-at-zero"},
        ),
        _unary("abs", jnp.abs, lambda x: T().abs(x), _nonzero),
        (
            "elementwise/abs_at_zero",
            jnp.abs,
            lambda x: T().abs(x),
            fixed([0.0, 1.5, -2.0]),
            {"divergence": "abs-at-zero"},
        ),
        _unary("sign_mul", lambda x: jnp.sign(x) * x**2, lambda x: T().sign(x) * x**2, _nonzero),
        _unary("where_sign", _where_sign_jax, _where_sign_torch, _nonzero),
        _unary(
            "clip",
            lambda x: jnp.clip(x, -1.0, 1.0),
            lambda x: T().clamp(x, -1.0, 1.0),
            lambda r, d: away(r, d, 3, 4, points=(-1.0, 1.0)),
        ),
        (
            "elementwise/clip_at_bounds",
            lambda x: jnp.clip(x, -1.0, 1.0),
            lambda x: T().clamp(x, -1.0, 1.0),
            fixed([-1.0, 0.3, 1.0]),
            {"divergence": "clip-at-bounds"},
        ),
        _unary(
            "lax_clamp",
            lambda x: jax.lax.clamp(-1.0, x, 1.0),
            lambda x: T().clamp(x, -1.0, 1.0),
            lambda r, d: away(r, d, 3, 4, points=(-1.0, 1.0)),
        ),
        _unary(
            "floor_mul",
            lambda x: jnp.floor(x) * x,
            lambda x: T().floor(x) * x,
            lambda r, d: away(r, d, 3, 4, points=(-2.0, -1.0, 0.0, 1.0, 2.0), margin=0.1),
        ),
        _unary("sinc", jnp.sinc, lambda x: T().sinc(x), _nonzero),
        _unary(
            "logit",
            sc.logit,
            lambda x: T().logit(x),
            lambda r, d: uniform(r, d, 0.1, 0.9, 3, 4),
            (),
        ),
        (
            "elementwise/atan2",
            jnp.arctan2,
            lambda y, x: T().atan2(y, x),
            _pair(_real, _real),
            {"tags": KINK},
        ),
        (
            "elementwise/atan2_origin",
            jnp.arctan2,
            lambda y, x: T().atan2(y, x),
            fixed([0.0, 1.0], [0.0, 2.0]),
            {"divergence": "atan2-origin"},
        ),
        (
            "elementwise/hypot",
            jnp.hypot,
            lambda x, y: T().hypot(x, y),
            _pair(_real, _real),
            {"tags": KINK},
        ),
        (
            "elementwise/xlogy",
            sc.xlogy,
            lambda x, y: T().xlogy(x, y),
            _pair(_real, _pos),
            {"tags": ("kinks", "domain:real,positive")},
        ),
        (
            "elementwise/maximum",
            jnp.maximum,
            lambda x, y: T().maximum(x, y),
            _pair(_real, _real),
            {"tags": KINK},
        ),
        (
            "elementwise/minimum",
            jnp.minimum,
            lambda x, y: T().minimum(x, y),
            _pair(_real, _real),
            {"tags": KINK},
        ),
        (
            "elementwise/fmax",
            jnp.fmax,
            lambda x, y: T().fmax(x, y),
            _pair(_real, _real),
            {"tags": KINK},
        ),
        (
            "elementwise/logaddexp",
            jnp.logaddexp,
            lambda x, y: T().logaddexp(x, y),
            _pair(_real, _real),
            {"tags": KINK},
        ),
        (
            "elementwise/softplus_above_threshold",
            jax.nn.softplus,
            lambda x: F().softplus(x),
            fixed([19.0, 20.5, 25.0]),
            {"divergence": "softplus-threshold"},
        ),
    ]


# ---- reductions ------------------------------------------------------------------------------


def _red(
    name: str, jf: Any, tf: Any, gen: Any = _real, tags: tuple[str, ...] = KINK, **opts: Any
) -> Entry:
    return (f"reductions/{name}", jf, tf, one(gen), {"tags": tags, **opts})


def _distinct(r: np.random.Generator, d: np.dtype) -> np.ndarray:
    return distinct(r, d, 3, 4)


def reductions() -> list[Entry]:
    inf = float("inf")
    return [
        _red("sum", lambda x: jnp.sum(x, axis=1), lambda x: x.sum(1)),
        _red("mean", jnp.mean, lambda x: x.mean()),
        _red("mean_axis0", lambda x: jnp.mean(x, axis=0), lambda x: x.mean(0)),
        _red("var_ddof0", lambda x: jnp.var(x, axis=1), lambda x: T().var(x, 1, correction=0)),
        _red("var_ddof1", lambda x: jnp.var(x, axis=1, ddof=1), lambda x: T().var(x, 1)),
        _red("std_ddof1", lambda x: jnp.std(x, axis=1, ddof=1), lambda x: T().std(x, 1)),
        _red("var_default", jnp.var, lambda x: T().var(x), tags=(), divergence="var-default-ddof"),
        _red("std_default", jnp.std, lambda x: T().std(x), tags=(), divergence="std-default-ddof"),
        _red(
            "logsumexp",
            lambda x: jax.nn.logsumexp(x, axis=1),
            lambda x: T().logsumexp(x, 1),
            tags=KINK_ROWS,
        ),
        _red("max", jnp.max, lambda x: x.max(), _distinct),
        _red(
            "max_dim", lambda x: jnp.max(x, axis=1), lambda x: T().max(x, dim=1).values, _distinct
        ),
        (
            "reductions/max_dim_ties",
            lambda x: jnp.max(x, axis=1),
            lambda x: T().max(x, dim=1).values,
            fixed([[1.0, 1.0, 0.0], [0.5, 2.0, 1.0]]),
            {"divergence": "max-dim-ties"},
        ),
        _red("amax", lambda x: jnp.max(x, axis=0), lambda x: T().amax(x, 0)),
        _red(
            "min_dim", lambda x: jnp.min(x, axis=1), lambda x: T().min(x, dim=1).values, _distinct
        ),
        _red("norm2", jnp.linalg.norm, lambda x: T().linalg.vector_norm(x)),
        _red(
            "norm2_axis",
            lambda x: jnp.linalg.norm(x, axis=1),
            lambda x: T().linalg.vector_norm(x, dim=1),
            tags=(),
        ),
        (
            "reductions/norm2_at_zero",
            lambda x: jnp.linalg.norm(x, axis=1),
            lambda x: T().linalg.vector_norm(x, dim=1),
            fixed([[0.0, 0.0], [3.0, 4.0]]),
            {"divergence": "norm-at-zero"},
        ),
        _red("norm_fro", jnp.linalg.norm, lambda x: T().linalg.matrix_norm(x)),
        _red(
            "norm1",
            lambda x: jnp.linalg.norm(jnp.ravel(x), ord=1),
            lambda x: T().linalg.vector_norm(x, ord=1),
            _nonzero,
        ),
        _red(
            "norm_inf",
            lambda x: jnp.linalg.norm(jnp.ravel(x), ord=jnp.inf),
            lambda x: T().linalg.vector_norm(x, ord=inf),
            _distinct,
        ),
        _red("cumsum", lambda x: jnp.cumsum(x, axis=1), lambda x: T().cumsum(x, 1)),
        _red(
            "cumprod",
            lambda x: jnp.cumprod(x, axis=1),
            lambda x: T().cumprod(x, 1),
            _nonzero,
            tags=(),
        ),
        _red(
            "cummax",
            lambda x: jax.lax.cummax(x, axis=1),
            lambda x: T().cummax(x, 1).values,
            _distinct,
        ),
        _red("prod", lambda x: jnp.prod(x, axis=1), lambda x: T().prod(x, 1), _nonzero),
        _red("sort", lambda x: jnp.sort(x, axis=1), lambda x: T().sort(x, 1).values, _distinct),
        _red(
            "median",
            jnp.median,
            lambda x: T().median(x),
            lambda r, d: distinct(r, d, 5),
            tags=("kinks", "domain:real"),
        ),
        _red(
            "mean_of_squares_tuple_axes",
            lambda x: jnp.mean(x**2, axis=(0, 1)),
            lambda x: (x**2).mean((0, 1)),
            tags=(),
        ),
    ]


# ---- linear algebra --------------------------------------------------------------------------


def _lin(name: str, jf: Any, tf: Any, mk: Any, **opts: Any) -> Entry:
    return (f"linalg/{name}", jf, tf, mk, opts)


def _spd_from(b: Any, xp: Any) -> Any:
    n = b.shape[-1]
    return b @ b.T + n * xp.eye(n, dtype=b.dtype)


def _sym_sep(b: Any, xp: Any) -> Any:
    """A symmetric matrix with well-separated eigenvalues (3, 6, 9, ...)."""
    n = b.shape[-1]
    diag = xp.diag(xp.arange(1, n + 1, dtype=b.dtype) * 3)
    return diag + 0.1 * (b + b.T)


def _qr_gauge_jax(a: Any) -> Any:
    q, r = jnp.linalg.qr(a)
    s = jnp.sign(jnp.diagonal(r))
    return q * s, r * s[:, None]


def _qr_gauge_torch(a: Any) -> Any:
    q, r = T().linalg.qr(a)
    s = T().sign(T().diagonal(r))
    return q * s, r * s[:, None]


def _eigh_jax(b: Any) -> Any:
    w, v = jnp.linalg.eigh(_sym_sep(b, jnp))
    return w, jnp.outer(v[:, 0], v[:, 0]), jnp.outer(v[:, -1], v[:, -1])


def _eigh_torch(b: Any) -> Any:
    w, v = T().linalg.eigh(_sym_sep(b, T()))
    return w, T().outer(v[:, 0], v[:, 0]), T().outer(v[:, -1], v[:, -1])


def _svd_jax(a: Any) -> Any:
    m = jnp.zeros((4, 3), a.dtype).at[0, 0].set(6.0).at[1, 1].set(4.0).at[2, 2].set(2.0)
    u, s, vt = jnp.linalg.svd(m + 0.2 * a, full_matrices=False)
    return s, jnp.outer(u[:, 0], u[:, 0]), jnp.outer(vt[0], vt[0])


def _svd_torch(a: Any) -> Any:
    torch = T()
    m = torch.zeros((4, 3), dtype=a.dtype)
    m[0, 0], m[1, 1], m[2, 2] = 6.0, 4.0, 2.0
    u, s, vt = torch.linalg.svd(m + 0.2 * a, full_matrices=False)
    return s, torch.outer(u[:, 0], u[:, 0]), torch.outer(vt[0], vt[0])


def _mats(*shapes: tuple[int, ...]) -> Any:
    return lambda r, d: tuple(normal(r, d, *s) for s in shapes)


def linalg() -> list[Entry]:
    sl = jax.scipy.linalg
    wc = lambda r, d: (well_conditioned(r, d, 4),)
    return [
        _lin("matmul", jnp.matmul, lambda a, b: a @ b, _mats((3, 4), (4, 2))),
        _lin("matvec", jnp.matmul, lambda a, b: a @ b, _mats((3, 4), (4,))),
        _lin("batched_matmul", jnp.matmul, lambda a, b: a @ b, _mats((2, 3, 4), (2, 4, 2))),
        _lin(
            "einsum",
            lambda a, b, c: jnp.einsum("ij,jk,k->i", a, b, c),
            lambda a, b, c: T().einsum("ij,jk,k->i", a, b, c),
            _mats((3, 4), (4, 2), (2,)),
        ),
        _lin(
            "einsum_batch_trace",
            lambda a: jnp.einsum("bii->b", a),
            lambda a: T().einsum("bii->b", a),
            _mats((2, 3, 3)),
        ),
        _lin("outer", jnp.outer, lambda a, b: T().outer(a, b), _mats((3,), (4,))),
        _lin(
            "solve",
            jnp.linalg.solve,
            lambda a, b: T().linalg.solve(a, b),
            lambda r, d: (well_conditioned(r, d, 4), normal(r, d, 4, 2)),
        ),
        _lin("inv", jnp.linalg.inv, lambda a: T().linalg.inv(a), wc),
        _lin("det", jnp.linalg.det, lambda a: T().linalg.det(a), wc),
        _lin("slogdet", lambda a: jnp.linalg.slogdet(a)[1], lambda a: T().linalg.slogdet(a)[1], wc),
        _lin("trace", jnp.trace, lambda a: T().trace(a), wc),
        _lin(
            "matrix_power",
            lambda a: jnp.linalg.matrix_power(a, 3),
            lambda a: T().linalg.matrix_power(a, 3),
            wc,
        ),
        _lin(
            "cholesky",
            lambda b: jnp.linalg.cholesky(_spd_from(b, jnp)),
            lambda b: T().linalg.cholesky(_spd_from(b, T())),
            _mats((4, 4)),
        ),
        _lin(
            "cholesky_logdet",
            lambda b: 2 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(_spd_from(b, jnp))))),
            lambda b: 2 * T().log(T().diagonal(T().linalg.cholesky(_spd_from(b, T())))).sum(),
            _mats((4, 4)),
        ),
        _lin(
            "solve_triangular",
            lambda a, b: sl.solve_triangular(
                jnp.tril(a) + 3 * jnp.eye(4, dtype=a.dtype), b, lower=True
            ),
            lambda a, b: T().linalg.solve_triangular(
                T().tril(a) + 3 * T().eye(4, dtype=a.dtype), b, upper=False
            ),
            _mats((4, 4), (4, 2)),
        ),
        _lin("qr", _qr_gauge_jax, _qr_gauge_torch, _mats((4, 3))),
        _lin("eigh", _eigh_jax, _eigh_torch, _mats((4, 4))),
        _lin(
            "eigvalsh",
            lambda b: jnp.linalg.eigvalsh(_sym_sep(b, jnp)),
            lambda b: T().linalg.eigvalsh(_sym_sep(b, T())),
            _mats((4, 4)),
        ),
        _lin("svd", _svd_jax, _svd_torch, _mats((4, 3))),
        _lin(
            "svdvals",
            lambda a: jnp.linalg.svd(a, compute_uv=False),
            lambda a: T().linalg.svdvals(a),
            lambda r, d: (np.diag([5.0, 3.0, 1.0]).astype(d) + normal(r, d, 3, 3, scale=0.2),),
        ),
        _lin(
            "pinv",
            jnp.linalg.pinv,
            lambda a: T().linalg.pinv(a),
            lambda r, d: (np.eye(4, 3).astype(d) * 2 + normal(r, d, 4, 3, scale=0.2),),
        ),
        _lin(
            "expm",
            sl.expm,
            lambda a: T().linalg.matrix_exp(a),
            lambda r, d: (normal(r, d, 3, 3, scale=0.3),),
        ),
        _lin(
            "lstsq",
            lambda a, b: jnp.linalg.lstsq(a, b)[0],
            lambda a, b: T().linalg.pinv(a) @ b,
            lambda r, d: (
                np.eye(5, 3).astype(d) * 2 + normal(r, d, 5, 3, scale=0.3),
                normal(r, d, 5),
            ),
        ),
    ]


def cases() -> list[Entry]:
    return [*tutorial(), *elementwise(), *reductions(), *linalg()]

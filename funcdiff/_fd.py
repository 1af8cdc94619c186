r"""Finite differences over pytrees: one vmapped, jitted computation per call.

Every perturbation of one call (coordinates or directions × stencil points) is evaluated by a
single jitted ``vmap`` of the user's function; large inputs are chunked with ``lax.map`` so
memory stays bounded. Compiled executables are cached per (function, input structure, shapes,
dtypes, scheme, settings), so calling again at a new point does not recompile.

Schemes, with :math:`D` the derivative along :math:`e` (a coordinate or a direction) and
:math:`h` the step:

* ``"forward"``: :math:`(f(x+he) - f(x))/h`, error :math:`O(h)`.
* ``"backward"``: :math:`(f(x) - f(x-he))/h`, error :math:`O(h)`.
* ``"central"``: :math:`(f(x+he) - f(x-he))/2h`, error :math:`O(h^2)`.
* ``"richardson"``: O(h^6) and O(h^8) Richardson extrapolation of central differences on a
  short ladder of 11 steps :math:`h_0 4^{-k}`, :math:`h_0 = \tfrac12\max(1, |x_i|)` (22
  evaluations per coordinate), the step chosen per coordinate by estimated error: see
  :mod:`funcdiff._fd_adaptive`. With a float ``step`` it is the fixed stencil: central
  differences at :math:`h, h/2, h/4` extrapolated twice, :math:`S = (16R_2 - R_1)/15` with
  :math:`R_k` the O(h^4) level, estimated by :math:`|S - R_2|` (the largest gap of the table
  where the steps are not in the asymptotic regime); :func:`richardson`, also used by
  ``check_grad``.
* ``"adaptive"`` and ``"complex"``: see :mod:`funcdiff._fd_adaptive` (a 24-step ladder with
  per-coordinate selection by estimated error; the complex step).

Default steps of the fixed stencils are per element and dtype-aware:
:math:`h_i = \epsilon^{p}\max(|x_i|, s)` with :math:`p = 1/2` (one-sided), :math:`1/3`
(central), the floor :math:`s` 2^-7 in float64 and 1 in float32, rounded so that
:math:`x_i + h_i` is exactly representable (:math:`p = 1/7` for the fixed Richardson stencil,
1/5 in float32, which only ``check_grad``'s directional mode uses by default). The error
estimate (``return_error=True``) is a truncation estimate from a second level plus a round-off
bound :math:`c\,\epsilon\max(\max|f|, |D||x_i|)/h`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._config import one_shot_jit
from funcdiff._fd_adaptive import (
    COMPLEX_STEP,
    LADDERS,
    adaptive,
    complex_step,
    holomorphic_problem,
    ladder_steps,
)
from funcdiff._validation import (
    call_user,
    check_bool,
    check_callable,
    check_choice,
    check_positive_float,
    is_float_dtype,
    is_prng_key,
    leaf_path_str,
)

__all__ = ["SCHEMES", "fd_grad", "fd_hvp", "fd_jacobian", "fd_jvp"]

SCHEMES = ("forward", "backward", "central", "richardson", "adaptive", "complex")
_EXPONENT = {"forward": 1 / 2, "backward": 1 / 2, "central": 1 / 3, "richardson": 1 / 7}
# Stencil offsets (in units of h) per scheme; the second tuple is the extra level (h/2) used
# only for the truncation estimate.
_OFFSETS = {
    "forward": ((1.0,), (0.5,)),
    "backward": ((-1.0,), (-0.5,)),
    "central": ((1.0, -1.0), (0.5, -0.5)),
    "richardson": ((1.0, -1.0, 0.5, -0.5, 0.25, -0.25), ()),
}
# Sum of |stencil weights| (in units of 1/h): round-off amplification of each scheme.
_WEIGHT_SUM = {"forward": 2.0, "backward": 2.0, "central": 1.0, "richardson": 3.0}
# One-sided truncation estimate: 2|D(h) - D(h/2)| is the O(h) term exactly; 2.5 also covers an
# O(h^2) term of the opposite sign up to half its size (log at x = 1e-6: 2 misses by 0.003%).
_ONE_SIDED_FACTOR = 2.5
# Function values carry more than one ulp of round-off (sums, transcendental functions).
_ROUNDOFF_ULPS = 8.0
# Largest number of perturbed copies of x held at once (elements): one batch of a GPU/TPU
# program, and of a CPU program where the copies fit in the L2 cache (2 MiB in float64). On a
# CPU, XLA splits each such batch across the cores; one 32 MiB batch is evaluated from main
# memory: d = 1000, central with its estimate, 17 ms against 40 ms on an elementwise function,
# 48 against 67 ms on a matrix-vector one (2 cores; 2**17 elements was as fast on the first,
# 1.2x slower in check_grad on the second: smaller batches make smaller matrix products).
_CHUNK_ELEMENTS = 1 << 22
_CPU_CHUNK_ELEMENTS = 1 << 18


# --------------------------------------------------------------------------------------------
# Input structure: a hashable spec, so jit can key its cache on it.


class LeafSpec(NamedTuple):
    path: str
    shape: tuple[int, ...]
    dtype: Any
    is_float: bool


class Spec(NamedTuple):
    treedef: Any
    leaves: tuple[LeafSpec, ...]
    compute_dtype: str

    @property
    def float_leaves(self) -> tuple[LeafSpec, ...]:
        return tuple(leaf for leaf in self.leaves if leaf.is_float)

    @property
    def size(self) -> int:
        return sum(math.prod(leaf.shape) for leaf in self.float_leaves)


def _leaf_dtype(leaf: Any) -> Any:
    return leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype


def _as_leaf(name: str, pstr: str, leaf: Any) -> Any:
    """``leaf`` as an array JAX can hold, or a TypeError/ValueError naming ``name`` and the path."""
    if isinstance(leaf, jax.Array | np.ndarray | np.generic) and leaf.dtype.kind in "biufc":
        return leaf
    if isinstance(leaf, str | bytes) or (
        isinstance(leaf, np.ndarray) and leaf.dtype.kind in "OSUV"
    ):
        raise TypeError(
            f"Expected `{name}` to hold float arrays, got {type(leaf).__name__} "
            f"{getattr(leaf, 'dtype', '')} at {pstr}."
        )
    try:
        arr = jnp.asarray(leaf)
    except OverflowError:
        raise ValueError(
            f"Expected `{name}` to hold float arrays, got the int {leaf} at {pstr}, too large "
            "for JAX's integers; pass a float."
        ) from None
    except (TypeError, ValueError):
        raise TypeError(
            f"Expected `{name}` to hold float arrays, got {type(leaf).__name__} at {pstr}."
        ) from None
    return arr


def analyse(
    name: str, x: Any, *, allow_nonfloat: bool
) -> tuple[Spec, jax.Array, list[Any], list[str]]:
    """Splits ``x`` into a flat float vector and the non-float leaves.

    Returns:
      ``(spec, flat, others, upcast)``: the hashable structure, the float leaves raveled into one
      vector of the compute dtype, the non-float leaves (held fixed), and the paths of leaves
      upcast from float16/bfloat16.

    Raises:
      TypeError: a non-float leaf where ``allow_nonfloat`` is False, or no float leaf at all.
    """
    pairs, treedef = jax.tree_util.tree_flatten_with_path(x)
    if not pairs:
        raise TypeError(f"Expected `{name}` to hold at least one float array, got an empty pytree.")
    leaves: list[LeafSpec] = []
    floats: list[np.ndarray] = []
    others: list[Any] = []
    upcast: list[str] = []
    for path, leaf in pairs:
        pstr = leaf_path_str(path)
        if is_prng_key(leaf):
            if not allow_nonfloat:
                raise TypeError(
                    f"Expected `{name}` to hold float arrays, got a PRNG key at {pstr}; "
                    "close over it instead (e.g. `lambda x: f(x, key)`)."
                )
            leaves.append(LeafSpec(pstr, tuple(leaf.shape), leaf.dtype, False))
            others.append(leaf)
            continue
        leaf = _as_leaf(name, pstr, leaf)
        dtype = _leaf_dtype(leaf)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"Expected `{name}` to hold real float arrays, got dtype {dtype} at {pstr}."
            )
        if not is_float_dtype(dtype):
            if not allow_nonfloat:
                raise TypeError(
                    f"Expected `{name}` to hold float arrays, got dtype {dtype} at {pstr}; "
                    f"pass floats (e.g. `x.astype(float)`) or close over integer arguments."
                )
            arr = jnp.asarray(leaf)
            leaves.append(LeafSpec(pstr, tuple(arr.shape), arr.dtype, False))
            others.append(arr)
            continue
        # on the host: no eager XLA ops (each would compile on a first call)
        host = np.asarray(jnp.asarray(leaf))
        if host.dtype in (jnp.float16, jnp.bfloat16):
            upcast.append(pstr)
            host = host.astype(np.float32)
        leaves.append(LeafSpec(pstr, tuple(host.shape), host.dtype, True))
        floats.append(host)
    if not floats:
        first = leaves[0]
        raise TypeError(
            f"Expected `{name}` to hold at least one float array, got dtype {first.dtype} at "
            f"{first.path}; pass floats (e.g. `x.astype(float)`)."
        )
    if not any(f.size for f in floats):
        shapes = ", ".join(f"{leaf.path}: {leaf.shape}" for leaf in leaves if leaf.is_float)
        raise ValueError(
            f"Expected `{name}` to hold at least one float element, got only empty arrays "
            f"({shapes}); there is nothing to differentiate."
        )
    if upcast:
        warnings.warn(
            f"`{name}` leaves {', '.join(upcast)} are float16/bfloat16: finite differences in "
            "half precision are meaningless (x + h == x), so they are upcast to float32.",
            UserWarning,
            stacklevel=3,
        )
    compute = jnp.result_type(*[f.dtype for f in floats])
    flat = jnp.asarray(np.concatenate([f.astype(compute).ravel() for f in floats]))
    return Spec(treedef, tuple(leaves), str(compute)), flat, others, upcast


def unravel(spec: Spec, flat: jax.Array, others: Any, *, cast: bool = False) -> Any:
    """Rebuilds the pytree from the flat float vector and the non-float leaves."""
    out: list[Any] = []
    pos = 0
    it = iter(others)
    for leaf in spec.leaves:
        if leaf.is_float:
            n = math.prod(leaf.shape)
            piece = flat[..., pos : pos + n].reshape(flat.shape[:-1] + leaf.shape)
            if cast:
                piece = piece.astype(leaf.dtype)
            out.append(piece)
            pos += n
        else:
            out.append(next(it))
    return jax.tree_util.tree_unflatten(spec.treedef, out)


def flat_output(out: Any, dtype: Any) -> jax.Array:
    """Ravels a function's (pytree) output into one vector of ``dtype``."""
    leaves = jax.tree_util.tree_leaves(out)
    return jnp.concatenate([jnp.ravel(jnp.asarray(v)).astype(dtype) for v in leaves])


@functools.lru_cache(maxsize=256)
def output_struct(fun: Callable[..., Any], spec: Spec) -> Any:
    """The output's ShapeDtypeStructs (cached per function and input spec: traced once)."""
    args = jax.tree_util.tree_unflatten(
        spec.treedef, [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in spec.leaves]
    )
    return jax.eval_shape(lambda a: call_user("fun", fun, a), args)


def check_outputs(fun: Callable[..., Any], spec: Spec, *, scalar: bool, caller: str) -> Any:
    """Checks that ``fun``'s output is float (and scalar when asked); returns its structure."""
    struct = output_struct(fun, spec)
    pairs = jax.tree_util.tree_flatten_with_path(struct)[0]
    if not pairs:
        raise ValueError(f"Expected `fun` to return an array, got {struct!r}.")
    for path, leaf in pairs:
        if not is_float_dtype(leaf.dtype):
            raise TypeError(
                f"Expected `fun` to return float arrays, got dtype {leaf.dtype} at "
                f"{leaf_path_str(path)}."
            )
    if scalar and (len(pairs) != 1 or pairs[0][1].shape != ()):
        shapes = ", ".join(f"{leaf_path_str(p)}: {tuple(v.shape)}" for p, v in pairs)
        raise ValueError(
            f"Expected `fun` to return a scalar for `{caller}`, got output shape(s) {shapes}; "
            "use `funcdiff.fd_jacobian` for non-scalar outputs."
        )
    return struct


# --------------------------------------------------------------------------------------------
# The jitted core.


def default_step_base(scheme: str, dtype: Any) -> float:
    """``eps**p`` for the scheme's exponent ``p`` (1/2 one-sided, 1/3 central, 1/7 Richardson).

    The Richardson entry is the fixed stencil's (``check_grad``'s directional mode); the
    ``"richardson"`` scheme itself chooses its step on a ladder (:mod:`funcdiff._fd_adaptive`).
    Richardson in float32 keeps ``p = 1/5`` (h = 0.04, not 0.1): with a floor of 1, a larger
    step leaves the asymptotic regime of any function varying on a scale below 1.
    """
    eps = float(jnp.finfo(dtype).eps)
    if scheme == "richardson" and eps > 1e-10:
        return eps ** (1 / 5)
    return eps ** _EXPONENT[scheme]


def _batch(m: int, row_elements: int, chunk_elements: int) -> int:
    return max(1, min(m, chunk_elements // max(1, row_elements)))


def map_rows(fn: Callable[[jax.Array], jax.Array], m: int, row_elements: int) -> jax.Array:
    """``vmap(fn)(arange(m))`` in batches of at most a chunk of elements (``lax.map``).

    ``row_elements``: the elements ``fn`` holds for one index. The chunk depends on the
    platform the program is compiled for (``lax.platform_dependent``; a batch that fits both
    is one ``vmap``, traced once).
    """
    idx = jnp.arange(m)

    def run(batch: int) -> jax.Array:
        return jax.vmap(fn)(idx) if batch >= m else jax.lax.map(fn, idx, batch_size=batch)

    cpu = _batch(m, row_elements, _CPU_CHUNK_ELEMENTS)
    if cpu >= m:
        return run(m)
    other = _batch(m, row_elements, _CHUNK_ELEMENTS)
    return jax.lax.platform_dependent(cpu=lambda: run(cpu), default=lambda: run(other))


def richardson(vals: jax.Array, hh: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Richardson from central differences at h, h/2, h/4: the O(h^6) value and its estimate.

    Level one, :math:`R_k = (4D_c(h_k/2) - D_c(h_k))/3`, is O(h^4); level two,
    :math:`S = (16R_2 - R_1)/15`, O(h^6). The truncation estimate is the gap of the last two
    levels :math:`|S - R_2|` (the error of :math:`R_2`, so an upper bound on :math:`S`'s).
    """
    c1 = (vals[:, 0] - vals[:, 1]) / (2 * hh)
    c2 = (vals[:, 2] - vals[:, 3]) / hh
    c4 = (vals[:, 4] - vals[:, 5]) / (hh / 2)
    r1 = (4.0 * c2 - c1) / 3.0
    r2 = (4.0 * c4 - c2) / 3.0
    s2 = (16.0 * r2 - r1) / 15.0
    gap_s, gap_r = jnp.abs(s2 - r2), jnp.abs(r2 - r1)
    gap_c1, gap_c2 = jnp.abs(c2 - c1), jnp.abs(c4 - c2)
    # asymptotic regime: halving h divides the central gap by ~4. Where it does not (by more
    # than 2x either way) the steps are too large for the function (tanh(100x) in float32)
    # and |S - R2| can under-report: the estimate falls back to the largest gap.
    ok = (gap_c1 >= 2.0 * gap_c2) & (gap_c1 <= 8.0 * gap_c2)
    big = jnp.maximum(jnp.maximum(gap_s, gap_r), jnp.maximum(gap_c1, gap_c2))
    return s2, jnp.where(ok, gap_s, big)


def _combine(
    scheme: str,
    want_error: bool,
    f0: jax.Array,
    vals: jax.Array,
    h: jax.Array,
    eps: float,
    xscale: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Stencil values ``vals`` (m, K, p) -> derivative (m, p) and optional error (m, p)."""
    hh = h[:, None]
    if scheme == "forward":
        d = (vals[:, 0] - f0) / hh
        d2 = (vals[:, 1] - f0) / (hh / 2) if want_error else None
        trunc = None if d2 is None else _ONE_SIDED_FACTOR * jnp.abs(d - d2)
    elif scheme == "backward":
        d = (f0 - vals[:, 0]) / hh
        d2 = (f0 - vals[:, 1]) / (hh / 2) if want_error else None
        trunc = None if d2 is None else _ONE_SIDED_FACTOR * jnp.abs(d - d2)
    elif scheme == "central":
        d = (vals[:, 0] - vals[:, 1]) / (2 * hh)
        d2 = (vals[:, 2] - vals[:, 3]) / hh if want_error else None
        trunc = None if d2 is None else (4.0 / 3.0) * jnp.abs(d - d2)
    else:
        d, trunc = richardson(vals, hh)
    if not want_error or trunc is None:
        return d, None
    fmax = jnp.maximum(jnp.abs(f0), jnp.max(jnp.abs(vals), axis=1))
    if xscale is not None:  # rounding inside f at x: |f'| |x| eps, even where f(x) = 0
        fmax = jnp.maximum(fmax, jnp.abs(d) * xscale[:, None])
    hmin = hh / 4 if scheme == "richardson" else hh
    roundoff = _ROUNDOFF_ULPS * eps * _WEIGHT_SUM[scheme] * fmax / hmin
    return d, trunc + roundoff


def step_floor(dtype: Any) -> float:
    """The smallest scale a default step follows: 2**-7 in float64, 1 in float32.

    Below it, a step relative to ``|x_i|`` alone would be lost in the round-off of an O(1)
    function value (``cos(x)`` at ``x = 1e-12``); above it, steps follow ``|x_i|``, so 1/x
    and log at x = 0.01 are differentiated with ``h/x = eps**p``, not 0.07. In float32 the
    steps ``eps**p`` are already coarse (``eps**(1/3) = 0.005``), so the floor stays at 1.
    """
    return 2.0**-7 if float(jnp.finfo(dtype).eps) < 1e-10 else 1.0


def coordinate_scale(x: jax.Array) -> jax.Array:
    """Per-element scale ``max(|x_i|, floor)`` that default steps are relative to."""
    return jnp.maximum(step_floor(x.dtype), jnp.abs(x))


def coordinate_steps(scheme: str, x: jax.Array) -> jax.Array:
    """Default per-element steps ``eps**p * max(|x_i|, floor)``, exactly representable."""
    h = default_step_base(scheme, x.dtype) * coordinate_scale(x)
    return (x + h) - x


def direction_steps(scheme: str, x: jax.Array, dirs: jax.Array) -> jax.Array:
    """Default steps along each row of ``dirs``: ``eps**p * max(1, max|x|) / max|v|``."""
    vmax = jnp.max(jnp.abs(dirs), axis=1)
    base = default_step_base(scheme, x.dtype)
    return base * jnp.maximum(1.0, jnp.max(jnp.abs(x))) / jnp.where(vmax > 0, vmax, 1.0)


def stencil_values(
    f_flat: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    offsets: tuple[float, ...],
    h: jax.Array,
    *,
    dirs: jax.Array | None = None,
    coords: jax.Array | None = None,
) -> jax.Array:
    """``f_flat(x + o*h_i*e_i)`` for every index ``i`` and offset ``o``: shape (m, K, p).

    ``e_i`` is row ``i`` of ``dirs`` when given, else the unit vector of coordinate
    ``coords[i]`` (all coordinates when ``coords`` is None). One vmap, chunked by ``lax.map``
    when the perturbed copies of ``x`` would not fit in memory.
    """
    n = x.shape[0]
    offs = jnp.asarray(offsets, dtype=x.dtype)
    if dirs is not None:
        m = dirs.shape[0]

        def point(i: jax.Array, o: jax.Array) -> jax.Array:
            return x + (o * h[i]) * dirs[i]

    else:
        coord = jnp.arange(n) if coords is None else coords
        m = coord.shape[0]
        lanes = jnp.arange(n)

        def point(i: jax.Array, o: jax.Array) -> jax.Array:
            return x + jnp.where(lanes == coord[i], o * h[i], jnp.zeros((), x.dtype))

    def per_index(i: jax.Array) -> jax.Array:
        return jax.vmap(lambda o: f_flat(point(i, o)))(offs)

    return map_rows(per_index, m, n * len(offsets))


def flat_function(
    fun: Callable[..., Any], spec: Spec, others: Any, dtype: Any
) -> Callable[[jax.Array], jax.Array]:
    """``fun`` as a map from the flat float vector to the flat output vector."""

    def f_flat(v: jax.Array) -> jax.Array:
        return flat_output(call_user("fun", fun, unravel(spec, v, others)), dtype)

    return f_flat


def output_eps(fun: Callable[..., Any], spec: Spec, dtype: Any) -> float:
    """The larger machine epsilon of the compute dtype and the output dtype."""
    out_dtype = jnp.result_type(*jax.tree_util.tree_leaves(output_struct(fun, spec)))
    return max(float(jnp.finfo(dtype).eps), float(jnp.finfo(out_dtype).eps))


def _fd_core_impl(
    fun: Callable[..., Any],
    spec: Spec,
    scheme: str,
    want_error: bool,
    directional: bool,
    user_step: bool,
    x: jax.Array,
    others: list[Any],
    dirs: jax.Array,
    step: jax.Array,
    bounded: bool = False,
    lo: jax.Array | None = None,
    hi: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Derivatives of ``fun`` along coordinates (``dirs`` unused) or along the rows of ``dirs``.

    Returns a dict with ``value`` (m, p), ``error`` (m, p) when asked, ``step`` (m,) and
    ``f0`` (p,).
    """
    if scheme in ("adaptive", "complex") or (scheme == "richardson" and not user_step):
        room = (hi - x, x - lo) if bounded and lo is not None and hi is not None else None
        return _special_core(fun, spec, scheme, directional, user_step, x, others, dirs, step, room)
    eps = output_eps(fun, spec, x.dtype)
    f_flat = flat_function(fun, spec, others, x.dtype)
    f0 = f_flat(x)
    m = dirs.shape[0] if directional else x.shape[0]
    xscale = jnp.zeros((m,), x.dtype) if directional else jnp.abs(x)
    if user_step:
        h = jnp.broadcast_to(step, (m,)).astype(x.dtype)
    elif directional:
        h = direction_steps(scheme, x, dirs)
    else:
        h = coordinate_steps(scheme, x)
    if bounded and lo is not None and hi is not None:  # shrink steps to stay in the domain
        reach = max(abs(o) for o in _OFFSETS[scheme][0])
        up, down = (hi - x) / reach, (x - lo) / reach
        fit = {"forward": up, "backward": down}.get(scheme, jnp.minimum(up, down))
        h = jnp.minimum(h, 0.5 * fit)  # strictly inside: f may be singular on the bound
        h = (x + h) - x
    offs = _OFFSETS[scheme][0] + (_OFFSETS[scheme][1] if want_error else ())
    vals = stencil_values(f_flat, x, offs, h, dirs=dirs if directional else None)
    value, error = _combine(scheme, want_error, f0, vals, h, eps, xscale)
    out = {"value": value, "step": h, "f0": f0}
    if error is not None:
        out["error"] = error
    return out


_fd_core = one_shot_jit(
    static_argnames=("fun", "spec", "scheme", "want_error", "directional", "user_step", "bounded")
)(_fd_core_impl)


class OutSpec(NamedTuple):
    """A function's output structure, hashable (a static argument of the fast programs)."""

    treedef: Any
    leaves: tuple[tuple[tuple[int, ...], str], ...]

    @classmethod
    def of(cls, struct: Any) -> OutSpec:
        leaves, treedef = jax.tree_util.tree_flatten(struct)
        return cls(treedef, tuple((tuple(v.shape), str(v.dtype)) for v in leaves))

    @property
    def struct(self) -> Any:
        leaves = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in self.leaves]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _shape_row(struct: Any, row: jax.Array) -> Any:
    """A flat output row as the output's pytree (``fd_jvp``'s layout)."""
    out_leaves, out_def = jax.tree_util.tree_flatten(struct)
    pieces, pos = [], 0
    for leaf in out_leaves:
        size = math.prod(leaf.shape)
        pieces.append(row[pos : pos + size].reshape(leaf.shape).astype(leaf.dtype))
        pos += size
    return jax.tree_util.tree_unflatten(out_def, pieces)


def _shape_result(kind: str, spec: Spec, out: OutSpec | None, mat: jax.Array) -> Any:
    """(m, p) derivatives -> the pytree ``fd_grad``, ``fd_jacobian`` or ``fd_jvp`` returns."""
    if kind == "grad":
        return _unravel_out(spec, mat[:, 0])
    assert out is not None
    if kind == "jacobian":
        return _unravel_jacobian(spec, out.struct, mat)
    return _shape_row(out.struct, mat[0])


@one_shot_jit(static_argnames=("fun", "spec", "out", "kind", "scheme", "want_error"))
def _program(
    fun: Callable[..., Any],
    spec: Spec,
    out: OutSpec | None,
    kind: str,
    scheme: str,
    want_error: bool,
    leaves: list[jax.Array],
    vleaves: list[jax.Array],
) -> tuple[Any, Any, jax.Array]:
    """The whole of a default ``fd_grad``/``fd_jacobian``/``fd_jvp`` call in one program:
    ravel, differences, unravel (``vleaves``: the leaves of ``fd_jvp``'s ``v``).

    Returns ``(derivative, error or None, ok)``; ``ok`` is False when anything is not finite
    (the caller then takes the checked path, which raises the precise error).
    """
    flat = jnp.concatenate([jnp.ravel(a).astype(spec.compute_dtype) for a in leaves])
    directional = kind == "jvp"
    dirs = jnp.zeros((0,), flat.dtype)
    if directional:
        dirs = jnp.concatenate([jnp.ravel(a).astype(flat.dtype) for a in vleaves])[None, :]
    res = _fd_core_impl(
        fun, spec, scheme, want_error, directional, False, flat, [], dirs, jnp.zeros((), flat.dtype)
    )
    ok = jnp.all(jnp.isfinite(flat)) & jnp.all(jnp.isfinite(res["f0"]))
    ok &= jnp.all(jnp.isfinite(dirs)) & jnp.all(jnp.isfinite(res["value"]))
    value = _shape_result(kind, spec, out, res["value"])
    error = None
    if want_error:
        ok &= jnp.all(jnp.isfinite(res["error"]))
        error = _shape_result(kind, spec, out, res["error"])
    return value, error, ok


# (kind, fun, treedef, shapes and dtypes (of x, and of v for fd_jvp), scheme, return_error,
# x64) -> (Spec, OutSpec), for calls that passed the checked path once: later calls skip the
# host-side checks (tens of microseconds warm).
_FAST_SPECS: dict[Any, tuple[Spec, OutSpec | None]] = {}
_FAST_MAX = 512


class Fast(NamedTuple):
    """A call's fast-path key (None: the checked path only) and its leaves."""

    key: Any
    leaves: list[Any]
    vleaves: list[Any]


def _fast_key(
    kind: str, fun: Any, x: Any, scheme: Any, return_error: Any, v: Any = None
) -> Fast | None:
    """The fast-path key and the leaves, or None when the call needs the checked path."""
    if not isinstance(scheme, str) or not isinstance(return_error, bool):
        return None
    leaves, treedef = jax.tree_util.tree_flatten(x)
    vleaves, vdef = jax.tree_util.tree_flatten(v)
    sig = []
    for leaf in (*leaves, *vleaves):
        if not isinstance(leaf, jax.Array) or leaf.dtype not in (np.float32, np.float64):
            return None
        sig.append((leaf.shape, leaf.dtype, leaf.weak_type))
    if any(weak for _, _, weak in sig):  # jit compiles weak-typed leaves separately:
        return Fast(None, leaves, vleaves)  # checked path only (it runs the strong program)
    x64 = bool(jax.config.read("jax_enable_x64"))
    key = (kind, fun, treedef, vdef, tuple(sig), scheme, return_error, x64)
    try:
        hash(key)
    except TypeError:
        return None
    return Fast(key, leaves, vleaves)


def _run_fast(
    fast: Fast | None, fun: Callable[..., Any], kind: str, scheme: str, return_error: bool
) -> Any:
    """The derivative by the cached fast program, or None (not cached, or not finite)."""
    if fast is None or fast.key is None or fast.key not in _FAST_SPECS:
        return None
    spec, out = _FAST_SPECS[fast.key]
    value, error, ok = _program(
        fun, spec, out, kind, scheme, return_error, fast.leaves, fast.vleaves
    )
    if not bool(ok):
        return None
    return (value, error) if return_error else value


def _run_checked(
    fast: Fast | None,
    fun: Callable[..., Any],
    spec: Spec,
    out: OutSpec | None,
    kind: str,
    scheme: str,
    return_error: bool,
    flat: jax.Array,
    vflat: jax.Array | None = None,
) -> Any:
    """After the checks: the fast program on the checked inputs (remembered for next time), or
    None when the fast path does not apply or a value is not finite (``run_core`` then raises
    the precise error)."""
    if fast is None or not all(leaf.is_float for leaf in spec.leaves):
        return None

    def pieces(vector: jax.Array) -> list[np.ndarray]:
        # host pieces of a checked flat vector: strong-typed, so a weak-typed x (jnp.full(5,
        # 0.1)) runs the same compiled program as a strong one
        host, parts, pos = np.asarray(vector), [], 0
        for leaf in spec.leaves:
            size = math.prod(leaf.shape)
            parts.append(host[pos : pos + size].reshape(leaf.shape).astype(leaf.dtype))
            pos += size
        return parts

    vleaves = [] if vflat is None else pieces(vflat)
    value, error, ok = _program(fun, spec, out, kind, scheme, return_error, pieces(flat), vleaves)
    if not bool(ok):
        return None
    if fast.key is not None and len(_FAST_SPECS) < _FAST_MAX:
        _FAST_SPECS[fast.key] = (spec, out)
    return (value, error) if return_error else value


def _special_core(
    fun: Callable[..., Any],
    spec: Spec,
    scheme: str,
    directional: bool,
    user_step: bool,
    x: jax.Array,
    others: list[Any],
    dirs: jax.Array,
    step: jax.Array,
    room: tuple[jax.Array, jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """The ``adaptive`` ladder and the ``complex`` step (see :mod:`funcdiff._fd_adaptive`)."""
    eps = output_eps(fun, spec, x.dtype)
    f_flat = flat_function(fun, spec, others, x.dtype)
    f0 = f_flat(x)
    n = x.shape[0]
    m = dirs.shape[0] if directional else n
    if directional:
        vmax = jnp.max(jnp.abs(dirs), axis=1)
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(x))) / jnp.where(vmax > 0, vmax, 1.0)
    else:
        scale = jnp.maximum(1.0, jnp.abs(x))
    if scheme == "complex":
        h = jnp.broadcast_to(step, (m,)).astype(x.dtype) if user_step else COMPLEX_STEP * scale
        cdtype = jnp.result_type(x.dtype, jnp.complex64)

        def f_complex(v: jax.Array) -> jax.Array:
            out = call_user("fun", fun, unravel(spec, v, others))
            leaves = jax.tree_util.tree_leaves(out)
            return jnp.concatenate([jnp.ravel(jnp.asarray(a)).astype(cdtype) for a in leaves])

        value, error = complex_step(
            f_complex,
            x,
            h,
            f0,
            eps,
            _ROUNDOFF_ULPS,
            dirs=dirs if directional else None,
            map_rows=map_rows,
        )
        return {"value": value, "error": error, "step": h, "f0": f0}
    top = jnp.broadcast_to(step, (m,)).astype(x.dtype) if user_step else 0.5 * scale
    if room is not None and not user_step:
        # near a bound the function changes on the scale of the distance to it: the ladder
        # starts at 4x that distance (the far side's distance when x is on the bound)
        near = jnp.minimum(
            jnp.where(room[0] > 0, room[0], jnp.inf), jnp.where(room[1] > 0, room[1], jnp.inf)
        )
        top = jnp.minimum(top, 4.0 * near)
    ladder = LADDERS[scheme]
    h = ladder_steps(x, top, None if directional else jnp.arange(n), ladder)
    k = h.shape[1]
    if directional:
        rows = jnp.repeat(dirs, k, axis=0)

        def values(hflat: jax.Array, sign: jax.Array) -> jax.Array:
            return stencil_values(f_flat, x, (1.0,), hflat * sign, dirs=rows)[:, 0]

    else:
        coords = jnp.repeat(jnp.arange(n), k)

        def values(hflat: jax.Array, sign: jax.Array) -> jax.Array:
            return stencil_values(f_flat, x, (1.0,), hflat * sign, coords=coords)[:, 0]

    xscale = jnp.zeros((m,), x.dtype) if directional else jnp.abs(x)
    value, error, hbest = adaptive(
        values, f0, h, eps, xscale, _ROUNDOFF_ULPS, room=room, ladder=ladder
    )
    return {"value": value, "error": error, "step": hbest, "f0": f0}


@functools.lru_cache(maxsize=256)
def _holomorphic_problem(fun: Callable[..., Any], spec: Spec) -> str | None:
    cdtype = jnp.result_type(spec.compute_dtype, jnp.complex64)

    def f_complex(v: jax.Array) -> Any:
        return call_user("fun", fun, unravel(spec, v, []))

    return holomorphic_problem(f_complex, jax.ShapeDtypeStruct((spec.size,), cdtype))


def check_holomorphic(fun: Callable[..., Any], spec: Spec) -> None:
    """Refuses ``scheme="complex"`` for a function that is not holomorphic in ``x``."""
    try:
        problem = _holomorphic_problem(fun, spec)
    except (TypeError, ValueError) as err:
        problem = f"an operation that rejects complex input ({type(err).__name__}: {err})"
    if problem is not None:
        raise ValueError(
            f'Expected `fun` to be holomorphic for `scheme="complex"`, got {problem} applied '
            "to (a value computed from) `x`: the complex step would return a wrong number. "
            'Use `scheme="adaptive"` (or "richardson") for this function.'
        )


# --------------------------------------------------------------------------------------------
# Boundary checks and public functions.


def check_scheme(scheme: Any) -> str:
    return check_choice("scheme", scheme, SCHEMES)


def check_step(step: Any) -> float | None:
    return None if step is None else check_positive_float("step", step)


def _check_finite_point(name: str, flat: jax.Array) -> None:
    if not np.all(np.isfinite(np.asarray(flat))):
        raise ValueError(f"Expected `{name}` to be finite, got NaN or inf in it.")


def run_core(
    fun: Callable[..., Any],
    spec: Spec,
    flat: jax.Array,
    others: list[Any],
    *,
    scheme: str,
    step: float | None,
    want_error: bool,
    dirs: jax.Array | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, jax.Array]:
    """Calls the cached jitted core; raises ValueError when f(x) is not finite."""
    directional = dirs is not None
    dirs_arr = dirs if dirs is not None else jnp.zeros((0,), flat.dtype)
    step_arr = jnp.asarray(0.0 if step is None else step, dtype=flat.dtype)
    res = _fd_core(
        fun,
        spec,
        scheme,
        want_error,
        directional,
        step is not None,
        flat,
        others,
        dirs_arr,
        step_arr,
        bounds is not None,
        None if bounds is None else jnp.asarray(bounds[0], flat.dtype),
        None if bounds is None else jnp.asarray(bounds[1], flat.dtype),
    )
    if not np.all(np.isfinite(np.asarray(res["f0"]))):
        raise ValueError("Expected `fun(x)` to be finite, got NaN or inf.")
    _check_finite_result(spec, res, directional, step)
    return res


def locate(spec: Spec, flat_index: int) -> str:
    """``path[index]`` of element ``flat_index`` of the flat float vector."""
    pos = 0
    for leaf in spec.float_leaves:
        size = math.prod(leaf.shape)
        if flat_index < pos + size:
            idx = np.unravel_index(flat_index - pos, leaf.shape) if leaf.shape else ()
            return f"{leaf.path}{[int(i) for i in idx]}"
        pos += size
    return f"<element {flat_index}>"  # pragma: no cover


def _check_finite_result(
    spec: Spec, res: dict[str, jax.Array], directional: bool, step: float | None
) -> None:
    """Refuses a NaN/inf derivative (fun is not finite at some x ± h): never return NaN."""
    bad = ~np.isfinite(np.asarray(res["value"])).all(axis=1)
    if "error" in res:
        bad |= ~np.isfinite(np.asarray(res["error"])).all(axis=1)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    where = "along `v`" if directional else f"at {locate(spec, row)}"
    h = float(np.asarray(res["step"])[row])
    fix = "a smaller `step`" if step is not None else "a finite `step`"
    raise ValueError(
        f"Expected `fun` to be finite near `x`, got NaN or inf in its finite differences "
        f"{where} (step {h:.3g}): fun is not finite at some x ± step. Pass {fix}, or move `x` "
        "away from the edge of fun's domain."
    )


def _check_step_resolves(flat: jax.Array, step: float | None) -> None:
    """Refuses a user ``step`` so small that ``x + step == x`` (the difference would be 0)."""
    if step is None:
        return
    xs = np.asarray(flat)
    with np.errstate(over="ignore"):
        h = np.asarray(step, dtype=xs.dtype)
        lost = (xs + h == xs) | ~np.isfinite(xs + h)
    if lost.any():
        i = int(np.flatnonzero(lost)[0])
        raise ValueError(
            f"Expected `step` to change `x` in {xs.dtype}, got step={step:g}: x + step "
            f"{'== x' if np.isfinite(xs[i] + h) else 'overflows'} at element {i} "
            f"(x = {xs[i]:g}). Pass step=None for a dtype-aware step."
        )


def _prepare(
    fun: Callable[..., Any], x: Any, scheme: Any, step: Any
) -> tuple[Spec, jax.Array, list[Any], str, float | None]:
    check_callable("fun", fun)
    scheme = check_scheme(scheme)
    step = check_step(step)
    if scheme == "complex":
        _refuse_half(x)
    spec, flat, others, _ = analyse("x", x, allow_nonfloat=False)
    _check_finite_point("x", flat)
    if scheme != "complex":
        _check_step_resolves(flat, step)
    else:
        check_holomorphic(fun, spec)
    return spec, flat, others, scheme, step


def check_domain(
    spec: Spec, flat: jax.Array, scheme: str, domain: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """``domain=(low, high)`` as flat bound vectors, or None; refuses an ``x`` outside it.

    ``low``/``high`` are each None (unbounded), a float, or a pytree shaped like ``x`` whose
    leaves broadcast to ``x``'s leaves.
    """
    if domain is None:
        return None
    if not isinstance(domain, tuple | list) or len(domain) != 2:
        raise TypeError(
            f"Expected `domain` to be a pair (low, high) of floats or pytrees shaped like `x`, "
            f"got {type(domain).__name__}; e.g. domain=(0.0, None) for log or sqrt."
        )
    if scheme == "complex":
        raise ValueError(
            '`domain` does not apply to `scheme="complex"` (it never leaves the real line: '
            "x + ih keeps Re = x); drop `domain`."
        )
    n = flat.shape[0]
    out = []
    for side, bound, default in (("low", domain[0], -np.inf), ("high", domain[1], np.inf)):
        if bound is None:
            out.append(np.full(n, default))
            continue
        try:
            leaves, treedef = jax.tree_util.tree_flatten(bound)
            # a scalar itself, not a one-leaf pytree: that must have the structure of `x`
            if jax.tree_util.treedef_is_leaf(treedef) and np.ndim(bound) == 0:
                arr = np.full(n, float(np.asarray(bound)))
            else:
                if treedef != spec.treedef:
                    raise ValueError("structure")
                pieces = [
                    np.broadcast_to(np.asarray(b, dtype=np.float64), leaf.shape).ravel()
                    for b, leaf in zip(leaves, spec.leaves, strict=True)
                    if leaf.is_float
                ]
                arr = np.concatenate(pieces)
        except (TypeError, ValueError):
            raise ValueError(
                f"Expected `domain`'s {side} bound to be None, a float or a pytree shaped like "
                f"`x` (leaves broadcastable to its leaves), got {bound!r}."
            ) from None
        if np.isnan(arr).any():
            raise ValueError(f"Expected `domain`'s {side} bound not to be NaN.")
        out.append(arr)
    lo, hi = out
    xs = np.asarray(flat, dtype=np.float64)
    bad = np.flatnonzero(~((lo <= xs) & (xs <= hi) & (lo < hi)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"Expected `domain` to contain `x`, got x = {xs[i]:g} at {locate(spec, i)} outside "
            f"[{lo[i]:g}, {hi[i]:g}] (or an empty interval). Move `x` inside or widen `domain`."
        )
    if scheme != "adaptive":
        need = {"forward": hi - xs, "backward": xs - lo}.get(scheme, np.minimum(hi - xs, xs - lo))
        edge = np.flatnonzero(need <= 0)
        if edge.size:
            i = int(edge[0])
            raise ValueError(
                f"`x` lies on the boundary of `domain` at {locate(spec, i)} (x = {xs[i]:g}): "
                f'scheme="{scheme}" needs room on both sides there. Use scheme="adaptive" '
                '(one-sided near a bound), or "forward"/"backward" toward the inside.'
            )
    return lo, hi


def _refuse_half(x: Any) -> None:
    """``scheme="complex"`` needs float32/float64 leaves (there is no complex float16)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(x)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and dtype in (jnp.float16, jnp.bfloat16):
            raise TypeError(
                f'Expected `x` to hold float32 or float64 arrays for `scheme="complex"`, got '
                f"dtype {dtype} at {leaf_path_str(path)}; cast it (`x.astype(jnp.float32)`)."
            )


def _unravel_out(spec: Spec, values: jax.Array) -> Any:
    return unravel(spec, values, [], cast=True)


def fd_grad(
    fun: Callable[..., Any],
    x: Any,
    *,
    scheme: str = "central",
    step: float | None = None,
    return_error: bool = False,
    domain: Any = None,
) -> Any:
    r"""The gradient of a scalar function by finite differences.

    All ``n`` (or ``2n``, ``4n``) perturbed evaluations run in one vmapped, jitted call; the
    compiled program is cached per function, input structure, shapes, dtypes and scheme.

    Args:
      fun: a scalar function of ``x``.
      x: an array or a pytree of float arrays. float16/bfloat16 leaves are upcast to float32
        with a warning; their derivatives are computed and returned in float32.
      scheme: ``"forward"``, ``"backward"``, ``"central"``, ``"richardson"`` (O(h^6)
        extrapolation on the best window of an 11-step ladder (ratio 4) per element, 22
        evaluations), ``"adaptive"`` (the same on a 24-step ladder (ratio 2), 48 evaluations;
        the most accurate in real arithmetic) or ``"complex"`` (``Im f(x+ih)/h``, 1
        evaluation, machine precision; only for functions holomorphic in ``x``, refused with
        a ValueError naming the operation otherwise).
      step: ``None`` for a dtype-aware step per element (``eps**p * max(|x_i|, floor)``; the
        ladders start at ``max(1, |x_i|) / 2``), or a float step used for every element as
        given (the top of the ladder for ``"adaptive"``, the fixed stencil ``h, h/2, h/4``
        for ``"richardson"``, ``h`` for ``"complex"``).
      return_error: also return an error estimate (truncation from a second step level plus a
        round-off bound), with the same structure as the gradient.
      domain: ``(low, high)``, each None, a float or a pytree shaped like ``x``: the interval
        ``fun`` is defined on. No evaluation leaves it: steps shrink to fit, and
        ``"adaptive"`` switches to one-sided ladders near a bound (also at ``x`` on the
        bound). An ``x`` outside is a ValueError naming ``domain``.

    Returns:
      The gradient, shaped like ``x``; or ``(gradient, error)`` when ``return_error``.

    Raises:
      TypeError: ``x`` holds a non-float leaf (the message names it), ``fun`` is not callable,
        ``scheme`` is not a string, ``return_error`` not a bool.
      ValueError: unknown ``scheme``, ``step <= 0`` or too small to change ``x``, ``x`` with no
        element, a non-scalar output (use :func:`fd_jacobian`), NaN/inf at ``x``, in
        ``fun(x)`` or at a perturbed point (a NaN derivative is never returned).
      UserFunctionError: ``fun`` raised, or is not jit-compatible (a ``ValueError``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import fd_grad, seed
      >>> g = fd_grad(seed.composite, jnp.array([0.5, 0.75]), scheme="forward", step=1e-3)
      >>> print(jnp.round(g, 4))
      [1.3619 0.1919]
    """
    default = step is None and domain is None
    fast = _fast_key("grad", fun, x, scheme, return_error) if default else None
    got = _run_fast(fast, fun, "grad", scheme, return_error)
    if got is not None:
        return got
    return_error = check_bool("return_error", return_error)
    spec, flat, others, scheme, step = _prepare(fun, x, scheme, step)
    bounds = check_domain(spec, flat, scheme, domain)
    check_outputs(fun, spec, scalar=True, caller="fd_grad")
    got = _run_checked(fast, fun, spec, None, "grad", scheme, return_error, flat)
    if got is not None:
        return got
    res = run_core(
        fun, spec, flat, others, scheme=scheme, step=step, want_error=return_error, bounds=bounds
    )
    value = _unravel_out(spec, res["value"][:, 0])
    if return_error:
        return value, _unravel_out(spec, res["error"][:, 0])
    return value


def _unravel_jacobian(spec: Spec, struct: Any, mat: jax.Array) -> Any:
    """(n, p) matrix -> pytree shaped like jax.jacobian: output structure outer, input inner."""
    out_leaves, out_def = jax.tree_util.tree_flatten(struct)
    pieces = []
    pos = 0
    for leaf in out_leaves:
        size = math.prod(leaf.shape)
        block = mat[:, pos : pos + size].T.reshape((*leaf.shape, mat.shape[0]))
        pos += size
        inner = unravel(spec, block, [])
        pieces.append(jax.tree_util.tree_map(lambda a, leaf=leaf: a.astype(leaf.dtype), inner))
    return jax.tree_util.tree_unflatten(out_def, pieces)


def fd_jacobian(
    fun: Callable[..., Any],
    x: Any,
    *,
    scheme: str = "central",
    step: float | None = None,
    return_error: bool = False,
    domain: Any = None,
) -> Any:
    """The Jacobian of ``fun`` at ``x`` by finite differences, for pytree inputs and outputs.

    The layout matches ``jax.jacobian``: the output's structure on the outside, the input's
    inside, each leaf of shape ``out_leaf.shape + in_leaf.shape``.

    Args:
      fun: a function of ``x`` returning a float array or a pytree of them.
      x: an array or a pytree of float arrays.
      scheme: as in :func:`fd_grad`.
      step: as in :func:`fd_grad`.
      return_error: also return the error estimate, with the same layout.
      domain: as in :func:`fd_grad`.

    Returns:
      The Jacobian; or ``(jacobian, error)`` when ``return_error``.

    Raises:
      TypeError, ValueError: as in :func:`fd_grad` (non-scalar outputs are fine here).

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import fd_jacobian
      >>> print(jnp.round(fd_jacobian(jnp.sin, jnp.zeros(2)), 4))
      [[1. 0.]
       [0. 1.]]
    """
    default = step is None and domain is None
    fast = _fast_key("jacobian", fun, x, scheme, return_error) if default else None
    got = _run_fast(fast, fun, "jacobian", scheme, return_error)
    if got is not None:
        return got
    return_error = check_bool("return_error", return_error)
    spec, flat, others, scheme, step = _prepare(fun, x, scheme, step)
    bounds = check_domain(spec, flat, scheme, domain)
    struct = check_outputs(fun, spec, scalar=False, caller="fd_jacobian")
    out = OutSpec.of(struct)
    got = _run_checked(fast, fun, spec, out, "jacobian", scheme, return_error, flat)
    if got is not None:
        return got
    res = run_core(
        fun, spec, flat, others, scheme=scheme, step=step, want_error=return_error, bounds=bounds
    )
    jac = _unravel_jacobian(spec, struct, res["value"])
    if return_error:
        return jac, _unravel_jacobian(spec, struct, res["error"])
    return jac


def _direction(spec: Spec, v: Any, name: str) -> jax.Array:
    vspec, vflat, _, _ = analyse(name, v, allow_nonfloat=False)
    shapes = [(leaf.shape) for leaf in spec.leaves]
    vshapes = [(leaf.shape) for leaf in vspec.leaves]
    if vspec.treedef != spec.treedef or shapes != vshapes:
        raise ValueError(
            f"Expected `{name}` to have the structure and shapes of `x`, got "
            f"{vspec.treedef} with shapes {vshapes} for `x` {spec.treedef} with shapes {shapes}."
        )
    _check_finite_point(name, vflat)
    return vflat.astype(spec.compute_dtype)


def fd_jvp(
    fun: Callable[..., Any],
    x: Any,
    v: Any,
    *,
    scheme: str = "central",
    step: float | None = None,
    return_error: bool = False,
) -> Any:
    r"""The directional derivative :math:`J(x)\,v` by finite differences along ``v``.

    The default step is ``eps**p * max(1, max|x|) / max|v|`` so that the perturbation of the
    largest element matches the per-element steps of :func:`fd_grad`.

    Args:
      fun: a function of ``x`` returning a float array or a pytree of them.
      x: an array or a pytree of float arrays.
      v: the tangent, with the structure and shapes of ``x``.
      scheme: as in :func:`fd_grad`.
      step: ``None`` (dtype-aware) or the float step along ``v``.
      return_error: also return the error estimate, shaped like the output.

    Returns:
      ``J v``, shaped like ``fun(x)``; or ``(jvp, error)`` when ``return_error``.

    Raises:
      TypeError, ValueError: as in :func:`fd_grad`; ``v`` of the wrong structure.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import fd_jvp
      >>> print(jnp.round(fd_jvp(jnp.sin, jnp.zeros(2), jnp.array([1.0, 2.0])), 4))
      [1. 2.]
    """
    fast = _fast_key("jvp", fun, x, scheme, return_error, v) if step is None else None
    got = _run_fast(fast, fun, "jvp", scheme, return_error)
    if got is not None:
        return got
    return_error = check_bool("return_error", return_error)
    spec, flat, others, scheme, step = _prepare(fun, x, scheme, step)
    vflat = _direction(spec, v, "v")
    struct = check_outputs(fun, spec, scalar=False, caller="fd_jvp")
    out = OutSpec.of(struct)
    got = _run_checked(fast, fun, spec, out, "jvp", scheme, return_error, flat, vflat)
    if got is not None:
        return got
    res = run_core(
        fun,
        spec,
        flat,
        others,
        scheme=scheme,
        step=step,
        want_error=return_error,
        dirs=vflat[None, :],
    )
    value = _shape_row(struct, res["value"][0])
    if return_error:
        return value, _shape_row(struct, res["error"][0])
    return value


@functools.lru_cache(maxsize=256)
def grad_of(fun: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.grad(fun)``, one object per ``fun`` so that jit caches keyed on it hit."""
    return jax.grad(fun)


def fd_hvp(
    fun: Callable[..., Any],
    x: Any,
    v: Any,
    *,
    scheme: str = "central",
    step: float | None = None,
    return_error: bool = False,
) -> Any:
    r"""The Hessian-vector product :math:`\nabla^2 f(x)\,v` by differences of gradients.

    Computes ``fd_jvp(jax.grad(fun), x, v)``: the autodiff gradient differenced along ``v``,
    a check of second-order rules that does not trust forward-over-reverse.

    Args:
      fun: a scalar function of ``x``.
      x: an array or a pytree of float arrays.
      v: the direction, with the structure and shapes of ``x``.
      scheme: as in :func:`fd_grad`.
      step: as in :func:`fd_jvp`.
      return_error: also return the error estimate, shaped like ``x``.

    Returns:
      ``H v`` shaped like ``x``; or ``(hvp, error)`` when ``return_error``.

    Raises:
      TypeError, ValueError: as in :func:`fd_grad`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import fd_hvp
      >>> f = lambda x: jnp.sum(x**3)
      >>> hv = fd_hvp(f, jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]))
      >>> print([round(float(v), 3) for v in hv])
      [6.0, 0.0]
    """
    if callable(fun) and step is None:  # a repeated call: fd_jvp's cached fast program
        try:
            fast = _fast_key("jvp", grad_of(fun), x, scheme, return_error, v)
        except TypeError:  # an unhashable fun: the checks below say so
            fast = None
        got = _run_fast(fast, grad_of(fun), "jvp", scheme, return_error) if fast else None
        if got is not None:
            return got
    check_callable("fun", fun)
    check_scheme(scheme)
    check_step(step)
    check_bool("return_error", return_error)
    spec, _, _, _ = analyse("x", x, allow_nonfloat=False)
    check_outputs(fun, spec, scalar=True, caller="fd_hvp")
    return fd_jvp(grad_of(fun), x, v, scheme=scheme, step=step, return_error=return_error)

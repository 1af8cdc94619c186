"""The registry of places where JAX and PyTorch legitimately differ, each re-measurable.

An entry records one op at one point (a kink, a tie, a default), what each framework gives
there (the value or the gradient, measured in float64 with jax 0.10.2 and torch 2.13.0), where
the behaviour is documented, and a JAX variant that matches PyTorch when one makes sense.
:meth:`Divergence.measure` runs both frameworks again, so a test notices when an upgrade
changes either side; :meth:`Divergence.covers` tells whether given inputs of a catalog case hit
the entry's point, which is how the kink search decides that a disagreement is registered.

Examples:
  >>> from funcdiff.parity import get_divergence
  >>> d = get_divergence("abs-at-zero")
  >>> d.jax_value, d.torch_value
  ((1.0,), (0.0,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._config import scoped
from funcdiff._report import table
from funcdiff.parity import _like_torch as L
from funcdiff.parity._torch import require_torch

__all__ = ["Divergence", "DivergenceMeasurement", "divergences", "get_divergence"]

Quantity = Literal["value", "grad"]
_NAN, _INF = float("nan"), float("inf")


class DivergenceMeasurement(NamedTuple):
    """Both frameworks (and the match-torch variant) re-measured at a divergence's point.

    Attributes:
      jax: what JAX gives, flattened.
      torch: what PyTorch gives, flattened.
      match_torch: what the match-torch variant gives (None when there is none).
    """

    jax: np.ndarray
    torch: np.ndarray
    match_torch: np.ndarray | None


def _close(a: Any, b: Any) -> bool:
    """Equal to float64 round-off (the registry's differences can be 1e-10 relative)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-13, atol=1e-15, equal_nan=True))


@dataclasses.dataclass(frozen=True)
class Divergence:
    """One registered difference between JAX and PyTorch.

    Attributes:
      name: unique id, e.g. ``"abs-at-zero"``; catalog cases name it in ``Case.divergence``.
      op: the two ops, JAX first (``"jnp.abs / torch.abs"``).
      point: where they differ, in words.
      quantity: ``"value"`` or ``"grad"`` (the VJP of an all-ones cotangent w.r.t. arg ``wrt``).
      jax_value: JAX's result there (float64), flattened.
      torch_value: PyTorch's result there (float64), flattened.
      source: where it is documented (docs, code or issue).
      args: the point itself, as NumPy float64 (or complex128) arrays.
      jax_fn: the JAX op as a function of ``args``.
      torch_fn: the PyTorch op as a function of tensors.
      match_torch: a JAX function of ``args`` that gives PyTorch's result, or None.
      wrt: the argument the gradient is taken with respect to.
      cases: catalog case names in which this divergence can show up.
      covers: predicate on a case's NumPy arguments: do they hit this divergence's point?
      note: anything else a porter should know.
    """

    name: str
    op: str
    point: str
    quantity: Quantity
    jax_value: tuple[complex | float, ...]
    torch_value: tuple[complex | float, ...]
    source: str
    args: tuple[np.ndarray, ...]
    jax_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    match_torch: Callable[..., Any] | None = None
    wrt: int = 0
    cases: tuple[str, ...] = ()
    covers: Callable[..., bool] | None = None
    note: str = ""

    def measure(self) -> DivergenceMeasurement:
        """Evaluates the point in float64 with live JAX, PyTorch and the match-torch variant.

        Raises:
          ImportError: PyTorch is not installed.
        """
        torch = require_torch()
        with scoped(x64=True):
            j = self._measure_jax(self.jax_fn)
            m = None if self.match_torch is None else self._measure_jax(self.match_torch)
        ts = [
            torch.tensor(a, dtype=torch.complex128 if np.iscomplexobj(a) else torch.float64)
            for a in self.args
        ]
        if self.quantity == "grad":
            ts[self.wrt].requires_grad_(True)
        out = self.torch_fn(*ts)
        if self.quantity == "value":
            t = out.detach().numpy()
        else:
            out.backward(torch.ones_like(out))
            t = ts[self.wrt].grad.numpy()
        return DivergenceMeasurement(np.ravel(j), np.ravel(t), None if m is None else np.ravel(m))

    def _measure_jax(self, fn: Callable[..., Any]) -> np.ndarray:
        args = [jnp.asarray(a) for a in self.args]
        if self.quantity == "value":
            return np.asarray(fn(*args))

        def partial(x: jax.Array) -> jax.Array:
            return fn(*args[: self.wrt], x, *args[self.wrt + 1 :])

        out, vjp = jax.vjp(partial, args[self.wrt])
        return np.asarray(vjp(jnp.ones_like(out))[0])

    def holds(self, measured: DivergenceMeasurement | None = None) -> bool:
        """True when both frameworks still give the registered values and still disagree."""
        m = self.measure() if measured is None else measured
        return (
            _close(m.jax, self.jax_value)
            and _close(m.torch, self.torch_value)
            and not _close(m.jax, m.torch)
        )

    def __str__(self) -> str:
        rows = [
            ("op", self.op),
            ("point", self.point),
            ("quantity", self.quantity),
            ("jax", _fmt_values(self.jax_value)),
            ("torch", _fmt_values(self.torch_value)),
            ("source", self.source),
            ("match torch", _match_name(self)),
            ("note", self.note or "-"),
        ]
        return table(("field", "value"), rows, title=f"divergence {self.name}")


def _fmt_values(v: tuple[complex | float, ...]) -> str:
    def one(x: complex | float) -> str:
        return f"{x:.12g}" if isinstance(x, float) else f"{x:.6g}".strip("()")

    return one(v[0]) if len(v) == 1 else "[" + ", ".join(one(x) for x in v) + "]"


def _match_name(d: Divergence) -> str:
    if d.match_torch is None:
        return "-"
    return getattr(d.match_torch, "_display", None) or getattr(d.match_torch, "__name__", "?")


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


def _registry() -> tuple[Divergence, ...]:
    F = lambda: _t().nn.functional
    return (
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
            covers=_any_eq(0.0),
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
            cases=("reductions/std_ddof1", "nn/layer_norm_no_eps"),
            covers=_any_zero_or_constant,
        ),
        Divergence(
            "softplus-threshold",
            "jax.nn.softplus / F.softplus",
            "x = 20.5 (above threshold 20)",
            "value",
            (20.500000001250154,),
            (20.5,),
            "torch F.softplus docs (beta=1, threshold=20: linear above); "
            "jax _src/nn/functions.py softplus (logaddexp(x, 0))",
            _a(20.5),
            jax.nn.softplus,
            lambda x: F().softplus(x),
            L.softplus_like_torch,
            cases=("elementwise/softplus_above_threshold",),
            covers=lambda x, *_: bool(np.any(np.asarray(x) > 20)),
            note="float64 only: in float32 both round to x; the gradient differs by 1.2e-9",
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
            note="the research notes said torch gives NaN; measured here it gives 0",
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
            note="jnp.maximum and torch.maximum agree: both split a tie 0.5/0.5",
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
    )


_REGISTRY: tuple[Divergence, ...] | None = None


def divergences() -> tuple[Divergence, ...]:
    """All registered divergences, in a fixed order. Does not import torch."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    return _REGISTRY


def get_divergence(name: str) -> Divergence:
    """The registry entry called ``name``.

    Raises:
      KeyError: no entry of that name; the message lists the names.
    """
    for d in divergences():
        if d.name == name:
            return d
    names = ", ".join(d.name for d in divergences())
    raise KeyError(f"No divergence named {name!r}; registered: {names}.")


def registry_table() -> str:
    """The registry rendered as a text table (op, where, JAX, torch, match torch)."""
    rows = [
        (
            d.name,
            d.op,
            d.point,
            d.quantity,
            _fmt_values(d.jax_value),
            _fmt_values(d.torch_value),
            _match_name(d),
        )
        for d in divergences()
    ]
    return table(
        ("name", "op", "where", "quantity", "jax", "torch", "match torch"),
        rows,
        title="known JAX / PyTorch divergences",
    )


def registry_markdown() -> str:
    """The registry as the Markdown table in ``docs/divergences.md`` (a test keeps them equal)."""
    head = (
        "| name | op | where | quantity | JAX | PyTorch | source | match-torch variant |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for d in divergences():
        cells = (
            d.name,
            f"`{d.op}`",
            d.point,
            d.quantity,
            _fmt_values(d.jax_value),
            _fmt_values(d.torch_value),
            d.source,
            "-" if d.match_torch is None else f"`{_match_name(d)}`",
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)

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
from funcdiff.parity._torch import require_torch

__all__ = ["Divergence", "DivergenceMeasurement", "divergences", "get_divergence"]

Quantity = Literal["value", "grad", "jvp"]


class DivergenceMeasurement(NamedTuple):
    """Both frameworks (and the match-torch variant) re-measured at a divergence's point.

    Attributes:
      jax: what JAX gives, flattened.
      torch: what PyTorch gives, flattened.
      match_torch: what the match-torch variant gives (None when there is none).

    Examples:
      >>> from funcdiff.parity import get_divergence
      >>> m = get_divergence("abs-at-zero").measure()  # runs JAX and PyTorch in float64
      >>> m.jax.tolist(), m.torch.tolist(), m.match_torch.tolist()
      ([1.0], [0.0], [0.0])
    """

    jax: np.ndarray
    torch: np.ndarray
    match_torch: np.ndarray | None


def _close(a: Any, b: Any, rtol: float = 1e-13) -> bool:
    """Equal to float64 round-off (the registry's differences can be 1e-10 relative)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=1e-15, equal_nan=True))


@dataclasses.dataclass(frozen=True)
class Divergence:
    """One registered difference between JAX and PyTorch.

    Attributes:
      name: unique id, e.g. ``"abs-at-zero"``; catalog cases name it in ``Case.divergence``.
      op: the two ops, JAX first (``"jnp.abs / torch.abs"``).
      point: where they differ, in words.
      quantity: ``"value"``, ``"grad"`` (the VJP of an all-ones cotangent w.r.t. arg ``wrt``)
        or ``"jvp"`` (forward mode along ``tangent`` for arg ``wrt``, zero for the others).
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
      tangent: the direction of a ``"jvp"`` entry (default all ones).
      rtol: how closely a re-measurement must reproduce the registered values (default
        1e-13; looser where the registered value is itself an approximation error).

    Examples:
      >>> from funcdiff.parity import get_divergence
      >>> d = get_divergence("abs-at-zero")
      >>> d.op, d.point, d.quantity
      ('jnp.abs / torch.abs', 'x = 0', 'grad')
      >>> d.jax_value, d.torch_value
      ((1.0,), (0.0,))
      >>> d.cases
      ('elementwise/abs', 'elementwise/abs_at_zero', 'nn/l1_loss')
      >>> d.holds()  # re-measured with the installed JAX and PyTorch
      True
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
    tangent: np.ndarray | None = None
    rtol: float = 1e-13

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
        if self.quantity == "jvp":
            tans = [torch.zeros_like(x) for x in ts]
            tans[self.wrt] = torch.tensor(self._tangent(), dtype=ts[self.wrt].dtype)
            _, t = torch.func.jvp(self.torch_fn, tuple(ts), tuple(tans))
            t = t.detach().numpy()
        else:
            if self.quantity == "grad":
                ts[self.wrt].requires_grad_(True)
            out = self.torch_fn(*ts)
            if self.quantity == "value":
                t = out.detach().numpy()
            else:
                out.backward(torch.ones_like(out))
                t = ts[self.wrt].grad.numpy()
        return DivergenceMeasurement(np.ravel(j), np.ravel(t), None if m is None else np.ravel(m))

    def _tangent(self) -> np.ndarray:
        a = self.args[self.wrt]
        return np.ones_like(a) if self.tangent is None else np.asarray(self.tangent, a.dtype)

    def _measure_jax(self, fn: Callable[..., Any]) -> np.ndarray:
        args = [jnp.asarray(a) for a in self.args]
        if self.quantity == "value":
            return np.asarray(fn(*args))

        def partial(x: jax.Array) -> jax.Array:
            return fn(*args[: self.wrt], x, *args[self.wrt + 1 :])

        if self.quantity == "jvp":
            _, t = jax.jvp(partial, (args[self.wrt],), (jnp.asarray(self._tangent()),))
            return np.asarray(t)
        out, vjp = jax.vjp(partial, args[self.wrt])
        return np.asarray(vjp(jnp.ones_like(out))[0])

    def holds(self, measured: DivergenceMeasurement | None = None) -> bool:
        """True when both frameworks still give the registered values and still disagree."""
        m = self.measure() if measured is None else measured
        return (
            _close(m.jax, self.jax_value, self.rtol)
            and _close(m.torch, self.torch_value, self.rtol)
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
    name = getattr(d.match_torch, "_display", None) or getattr(d.match_torch, "__name__", "?")
    return str(name)


_REGISTRY: tuple[Divergence, ...] | None = None


def divergences() -> tuple[Divergence, ...]:
    """All registered divergences, in a fixed order. Does not import torch.

    Examples:
      >>> from funcdiff.parity import divergences
      >>> [d.name for d in divergences()][:3]
      ['abs-at-zero', 'clip-at-bounds', 'lax-clamp-at-bounds']
    """
    global _REGISTRY
    if _REGISTRY is None:
        from funcdiff.parity._divergence_entries import registry

        _REGISTRY = registry()
    return _REGISTRY


def get_divergence(name: str) -> Divergence:
    """The registry entry called ``name``.

    Raises:
      KeyError: no entry of that name; the message lists the names.

    Examples:
      >>> from funcdiff.parity import get_divergence
      >>> get_divergence("abs-at-zero").torch_value
      (0.0,)
      >>> try:
      ...     get_divergence("abs")
      ... except KeyError as e:
      ...     print(e.args[0])
      No divergence named 'abs'; registered: abs-at-zero, clip-at-bounds, ...
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

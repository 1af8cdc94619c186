"""The reference catalog: JAX functions and their PyTorch twins, with input generators.

Every :class:`Case` names a JAX function, its PyTorch twin (same positional arguments, as
tensors), a generator of NumPy inputs (``make_args(rng, dtype)``) and, for cases evaluated on
purpose at a kink, tie or default where the frameworks legitimately differ, the name of the
registry entry that explains it (:func:`funcdiff.parity.get_divergence`). The catalog runner
(:func:`funcdiff.parity.run_catalog`) compares each case in float32 and float64.

Regular cases draw their inputs away from kinks, ties and ill-conditioning: distinct values
where order matters, well-conditioned matrices for solves, SPD matrices for Cholesky, distinct
eigen- and singular values, and gauge-invariant outputs (eigenvalues, projectors ``v v^T``,
sign-normalised QR) where eigen- or singular vectors have a sign freedom.

Building the catalog does not import torch: the twins import it when called.

Examples:
  >>> from funcdiff.parity import catalog
  >>> cases = catalog()
  >>> len(cases) >= 80
  True
  >>> [c.name for c in cases][:3]
  ['tutorial/f', 'tutorial/g', 'tutorial/composite']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcdiff.parity import _catalog_math, _catalog_nn

__all__ = ["Case", "catalog", "catalog_table", "get_case"]

MakeArgs = Callable[[np.random.Generator, np.dtype], tuple[Any, ...]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One reference case: a JAX function, its PyTorch twin and their inputs.

    Attributes:
      name: unique ``"group/op"``, e.g. ``"elementwise/log1p"``.
      jax_fn: a pure JAX function of positional arguments.
      torch_fn: its PyTorch twin, same positional arguments as tensors.
      make_args: ``make_args(rng, dtype)`` returns the NumPy arguments (pytrees allowed) in
        the given float dtype; integer leaves (labels, indices) stay integer.
      divergence: the registry entry this case is expected to show, or None.
      rtol: per-case relative tolerance (None: the dtype default).
      atol: per-case absolute tolerance (None: the dtype default).
      tags: free-form labels; ``"kinks"`` marks cases the kink search probes, ``"domain:*"``
        the inputs they accept there (``real``, ``positive``, ``unit``, ``rows``).

    Examples:
      >>> import numpy as np
      >>> from funcdiff.parity import get_case
      >>> case = get_case("elementwise/log1p")
      >>> case.group, case.divergence, case.tags
      ('elementwise', None, ('kinks', 'domain:real'))
      >>> (x,) = case.args(np.float32, seed=0)
      >>> x.shape, x.dtype
      ((3, 4), dtype('float32'))
      >>> get_case("elementwise/abs_at_zero").divergence  # evaluated at the kink on purpose
      'abs-at-zero'
    """

    name: str
    jax_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    make_args: MakeArgs
    divergence: str | None = None
    rtol: float | None = None
    atol: float | None = None
    tags: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """The part of the name before the slash (``"elementwise"``)."""
        return self.name.split("/", 1)[0]

    def args(self, dtype: Any = np.float64, seed: int = 0) -> tuple[Any, ...]:
        """The case's inputs for ``dtype`` from ``np.random.default_rng(seed)``."""
        return tuple(self.make_args(np.random.default_rng(seed), np.dtype(dtype)))


_CATALOG: tuple[Case, ...] | None = None


def _build() -> tuple[Case, ...]:
    raw: list[tuple[Any, ...]] = [*_catalog_math.cases(), *_catalog_nn.cases()]
    out = []
    for entry in raw:
        name, jf, tf, mk, *rest = entry
        opts: dict[str, Any] = rest[0] if rest else {}
        out.append(Case(name, jf, tf, mk, **opts))
    names = [c.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:  # pragma: no cover - guarded by tests
        raise RuntimeError(f"duplicate catalog case names: {dupes}")
    return tuple(out)


def catalog() -> tuple[Case, ...]:
    """The reference cases, in a fixed order (tutorial, elementwise, reductions, linalg, nn,
    compositions). Does not import torch.

    Returns:
      A tuple of :class:`Case`, at least 80, names unique.

    Examples:
      >>> from funcdiff.parity import catalog
      >>> cases = catalog()
      >>> sorted({case.group for case in cases})
      ['compositions', 'elementwise', 'linalg', 'nn', 'reductions', 'tutorial']
      >>> [case.name for case in cases if case.divergence][:2]
      ['elementwise/pow_zero_at_zero', 'elementwise/abs_at_zero']
    """
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = _build()
    return _CATALOG


def get_case(name: str) -> Case:
    """The catalog case called ``name``.

    Raises:
      TypeError: ``name`` is not a string.
      KeyError: no such case; the message suggests names containing ``name``'s last part.

    Examples:
      >>> from funcdiff.parity import get_case
      >>> get_case("elementwise/log1p").name
      'elementwise/log1p'
      >>> try:
      ...     get_case("log1p")
      ... except KeyError as e:
      ...     print(e.args[0])
      No catalog case named 'log1p'; did you mean ['elementwise/log1p']?
    """
    if not isinstance(name, str):
        raise TypeError(
            f"Expected `name` to be a catalog case name such as 'elementwise/log1p', got "
            f"{type(name).__name__}."
        )
    for c in catalog():
        if c.name == name:
            return c
    tail = name.rsplit("/", 1)[-1]
    near = [c.name for c in catalog() if tail and tail in c.name][:8]
    raise KeyError(f"No catalog case named {name!r}" + (f"; did you mean {near}?" if near else "."))


def catalog_table(cases: Sequence[Case] | None = None) -> str:
    """The catalog as a text table: name, divergence, tags."""
    from funcdiff._report import table

    rows = [
        (c.name, c.divergence or "-", ", ".join(c.tags) or "-")
        for c in (catalog() if cases is None else cases)
    ]
    return table(("case", "expected divergence", "tags"), rows, title="parity catalog")

"""Model porting: torch ``nn.Module`` weights into Flax NNX / Equinox models, and back.

Private modules, one concept each; the public names are re-exported from ``funcdiff.parity``:

- ``_frameworks``: which framework a JAX model is, and its leaves by dotted path.
- ``_layouts``: the torch <-> JAX layout rules per layer type (the table is its docstring).
- ``_align``: which torch layer feeds which JAX layer (``rules``, then definition order).
- ``_weights``: ``load_torch_weights``, ``export_torch_weights``, ``WeightMapping``.

flax, equinox and torch are imported only when a function needs them.
"""

from __future__ import annotations

from funcdiff.parity.models._frameworks import (
    framework_of,
    get_leaf,
    jax_leaves,
    set_leaves,
)
from funcdiff.parity.models._weights import (
    WeightMapping,
    WeightRow,
    export_torch_weights,
    load_torch_weights,
)

__all__ = [
    "WeightMapping",
    "WeightRow",
    "export_torch_weights",
    "framework_of",
    "get_leaf",
    "jax_leaves",
    "load_torch_weights",
    "set_leaves",
]

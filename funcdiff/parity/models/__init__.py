"""Model porting: torch ``nn.Module`` weights into Flax NNX / Equinox models, and back.

Private modules, one concept each; the public names are re-exported from ``funcdiff.parity``:

- ``_frameworks``: which framework a JAX model is, and its leaves by dotted path.
- ``_layouts``: the torch <-> JAX layout rules per layer type (the table is its docstring);
  the rules are in ``_layouts_nnx`` and ``_layouts_eqx``, built from ``_layout_base``.
- ``_align``: which torch layer feeds which JAX layer (``rules``, then definition order).
- ``_weights``: ``load_torch_weights``, ``export_torch_weights``, ``WeightMapping``.
- ``_capture``: ``tap``, the recorder of JAX intermediates and cotangents, torch hooks.
- ``_instrument``: a copy of the JAX model as one pure function with recording wrappers.
- ``_pairing``: layers by name and kind, activations and gradients by layout.
- ``_conventions``: the convention check (findings pointing at registry entries).
- ``_rows``: the rows of a comparison (layers, parameters) and the first divergence.
- ``_compare``: ``compare_model``.
- ``_report``: ``ModelParityResult``, ``LayerRow``, ``ParamRow``, ``Finding``.

flax, equinox and torch are imported only when a function needs them.
"""

from __future__ import annotations

from funcdiff.parity.models._capture import tap
from funcdiff.parity.models._compare import compare_model
from funcdiff.parity.models._frameworks import (
    framework_of,
    get_leaf,
    jax_leaves,
    set_leaves,
)
from funcdiff.parity.models._report import (
    Finding,
    LayerRow,
    ModelParityResult,
    ParamRow,
)
from funcdiff.parity.models._weights import (
    WeightMapping,
    WeightRow,
    export_torch_weights,
    load_torch_weights,
)

__all__ = [
    "Finding",
    "LayerRow",
    "ModelParityResult",
    "ParamRow",
    "WeightMapping",
    "WeightRow",
    "compare_model",
    "export_torch_weights",
    "framework_of",
    "get_leaf",
    "jax_leaves",
    "load_torch_weights",
    "set_leaves",
    "tap",
]

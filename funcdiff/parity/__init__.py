"""PyTorch parity: JAX functions and optax optimizers checked against their PyTorch twins.

Importing this package does not import torch; functions that need it import it on first use
and raise ``ImportError`` with ``pip install 'funcdiff[torch]'`` when it is missing.
"""

from __future__ import annotations

from funcdiff.parity._catalog import (
    Case,
    catalog,
    get_case,
)
from funcdiff.parity._compare import (
    DEFAULT_TOLERANCES,
    ParityResult,
    ParityRow,
    compare,
)
from funcdiff.parity._convert import (
    from_torch,
    to_torch,
)
from funcdiff.parity._divergences import (
    Divergence,
    DivergenceMeasurement,
    divergences,
    get_divergence,
)
from funcdiff.parity._golden import (
    GOLDEN_PATH,
    GoldenError,
)
from funcdiff.parity._like_torch import (
    abs_like_torch,
    atan2_like_torch,
    clip_like_torch,
    fmax_like_torch,
    gelu_like_torch,
    hard_sigmoid_like_torch,
    hardtanh_like_torch,
    leaky_relu_like_torch,
    max_like_torch,
    median_like_torch,
    min_like_torch,
    norm_like_torch,
    pow_like_torch,
    softplus_like_torch,
    std_like_torch,
    var_like_torch,
    xlogy_like_torch,
)
from funcdiff.parity._optim import (
    OptimizerParityResult,
    compare_optimizers,
    optax_like,
)
from funcdiff.parity._suite import (
    CaseOutcome,
    CatalogReport,
    regenerate_golden,
    run_catalog,
)
from funcdiff.parity._torch import (
    require_torch,
    torch_available,
)
from funcdiff.parity.models import (
    Finding,
    LayerRow,
    ModelParityResult,
    ParamRow,
    WeightMapping,
    WeightRow,
    compare_model,
    export_torch_weights,
    load_torch_weights,
    tap,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "GOLDEN_PATH",
    "Case",
    "CaseOutcome",
    "CatalogReport",
    "Divergence",
    "DivergenceMeasurement",
    "Finding",
    "GoldenError",
    "LayerRow",
    "ModelParityResult",
    "OptimizerParityResult",
    "ParamRow",
    "ParityResult",
    "ParityRow",
    "WeightMapping",
    "WeightRow",
    "abs_like_torch",
    "atan2_like_torch",
    "catalog",
    "clip_like_torch",
    "compare",
    "compare_model",
    "compare_optimizers",
    "divergences",
    "export_torch_weights",
    "fmax_like_torch",
    "from_torch",
    "gelu_like_torch",
    "get_case",
    "get_divergence",
    "hard_sigmoid_like_torch",
    "hardtanh_like_torch",
    "leaky_relu_like_torch",
    "load_torch_weights",
    "max_like_torch",
    "median_like_torch",
    "min_like_torch",
    "norm_like_torch",
    "optax_like",
    "pow_like_torch",
    "regenerate_golden",
    "require_torch",
    "run_catalog",
    "softplus_like_torch",
    "std_like_torch",
    "tap",
    "to_torch",
    "torch_available",
    "var_like_torch",
    "xlogy_like_torch",
]

"""framework_of and the leaf helpers (get/set by dotted path) shared by the porting code."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from _models_helpers import (  # noqa: E402
    _abstract,
    _x64_and_seed,  # noqa: F401  (the autouse fixture)
)

from funcdiff.parity import (  # noqa: E402
    load_torch_weights,
)
from funcdiff.parity.models._frameworks import (  # noqa: E402
    framework_of,
    get_leaf,
    jax_leaves,
    set_leaves,
)


def test_leaf_helpers_get_and_set_by_dotted_path():
    seq = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 1, rngs=nnx.Rngs(1)))
    assert list(jax_leaves(seq)) == [
        "layers.0.kernel",
        "layers.0.bias",
        "layers.1.kernel",
        "layers.1.bias",
    ]
    assert framework_of(seq) == "nnx"
    assert set_leaves(seq, {"layers.1.bias": jnp.ones(1)}) is seq
    assert float(get_leaf(seq, "layers.1.bias")[0]) == 1.0
    with pytest.raises(KeyError, match=r"Did you mean `layers.1.bias`"):
        get_leaf(seq, "layers.1.bais")
    e = eqx.nn.Sequential([eqx.nn.Linear(2, 2, key=jax.random.PRNGKey(0))])
    e2 = set_leaves(e, {"layers.0.bias": jnp.full(2, 3.0)})
    assert float(get_leaf(e2, "layers.0.bias")[1]) == 3.0
    assert float(get_leaf(e, "layers.0.bias")[1]) != 3.0


def test_importing_parity_imports_neither_flax_nor_equinox():
    import subprocess
    import sys

    code = (
        "import sys, funcdiff.parity; "
        "print(sorted(m for m in ('flax', 'equinox', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nnx_shared_module_is_listed_once_and_torch_tied_weight_is_said():
    class TTied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Linear(3, 3)
            self.dec = self.enc  # the same module twice: state_dict lists both names

    class JTied(nnx.Module):
        def __init__(self) -> None:
            self.enc = _abstract(nnx.Linear, 3, 3)
            self.dec = self.enc

    m = JTied()
    assert sorted(jax_leaves(m)) == ["enc.bias", "enc.kernel"]
    res = load_torch_weights(m, TTied())
    assert res.ok, str(res)
    assert {n for n, _ in res.dropped} == {"dec.weight", "dec.bias"}
    assert m.dec.kernel is m.enc.kernel


def test_equinox_leaves_are_floating_arrays_and_state():
    class WithIndex(eqx.Module):
        lin: Any
        idx: Any  # an integer buffer: no weight

        def __init__(self) -> None:
            self.lin = eqx.nn.Linear(2, 2, key=jax.random.PRNGKey(0))
            self.idx = jnp.arange(3)

    assert list(jax_leaves(WithIndex())) == ["lin.weight", "lin.bias"]
    pair = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, "batch", mode="batch")
    assert list(jax_leaves(pair)) == [
        "weight",
        "bias",
        "batch_counter",
        "batch_state_index.0",
        "batch_state_index.1",
    ]

"""to_torch / from_torch: dtype, shape, tree and values survive; strides and views are handled."""

from __future__ import annotations

import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from funcdiff.parity import from_torch, to_torch  # noqa: E402

DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool"]


def _sample(dtype: str, shape=(3, 4)) -> np.ndarray:
    a = np.random.default_rng(0).standard_normal(shape) * 10
    return a.astype(np.dtype(jnp.bfloat16) if dtype == "bfloat16" else dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 4), (2, 1, 3)])
def test_round_trip_preserves_dtype_shape_and_values(dtype, shape):
    a = _sample(dtype, shape)
    t = to_torch(a)
    assert tuple(t.shape) == shape
    assert str(t.dtype) == f"torch.{dtype}"
    back = from_torch(t)
    assert isinstance(back, jax.Array)
    assert back.dtype == a.dtype and back.shape == shape
    np.testing.assert_array_equal(np.asarray(back).astype(np.float64), a.astype(np.float64))


def test_values_match_torch_built_the_same_way():
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    np.testing.assert_array_equal(
        to_torch(jnp.asarray(a)).numpy(), torch.arange(12.0).reshape(3, 4).div(7).numpy()
    )


def test_pytree_structure_is_kept():
    tree = {"w": np.ones((2, 2), np.float32), "layers": [np.zeros(3), (np.arange(2), None)]}
    t = to_torch(tree)
    assert isinstance(t["layers"], list) and t["layers"][1][1] is None
    assert t["layers"][1][0].dtype == torch.int64
    back = from_torch(t)
    chex.assert_trees_all_equal_structs(back, jax.tree.map(jnp.asarray, tree))
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, back), tree)


@pytest.mark.parametrize(
    "view",
    [
        lambda t: t.T,
        lambda t: t[:, ::2],
        lambda t: t[1:, 1:],
        lambda t: t[0:1].expand(4, 5),
        lambda t: t._neg_view(),
        lambda t: t.permute(1, 0).flip(0),
    ],
    ids=["transpose", "strided", "offset", "expanded", "neg_view", "permute_flip"],
)
def test_from_torch_handles_non_contiguous_views(view):
    base = torch.arange(20.0).reshape(4, 5)
    t = view(base)
    expected = t.clone().contiguous().resolve_neg().numpy()
    np.testing.assert_array_equal(np.asarray(from_torch(t)), expected)


@pytest.mark.parametrize("make", [lambda a: a.T, lambda a: a[::2, 1:], lambda a: jnp.asarray(a).T])
def test_to_torch_handles_non_contiguous_sources_and_owns_its_memory(make):
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    src = make(a)
    t = to_torch(src)
    assert t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), np.asarray(src))
    t.add_(1.0)  # writing to the tensor never touches the source
    np.testing.assert_array_equal(np.asarray(src), np.asarray(make(np.arange(24.0).reshape(4, 6))))


def test_from_torch_detaches_and_resolves_zero_tensors():
    x = torch.ones(3, requires_grad=True)
    y = (x * 2).sum()
    (g,) = torch.autograd.grad(y, x)
    np.testing.assert_array_equal(np.asarray(from_torch(x * 3)), [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(np.asarray(from_torch(g)), [2.0, 2.0, 2.0])
    z = torch.autograd.grad((x.abs() * 0).sum(), x, create_graph=True)[0]
    np.testing.assert_array_equal(np.asarray(from_torch(z)), [0.0, 0.0, 0.0])


def test_from_torch_keeps_float64_without_leaking_x64():
    assert not jax.config.jax_enable_x64
    out = from_torch(torch.ones(2, dtype=torch.float64) / 3)
    assert out.dtype == jnp.float64
    assert not jax.config.jax_enable_x64
    np.testing.assert_array_equal(np.asarray(out), np.ones(2) / 3)


@pytest.mark.parametrize("fn", [to_torch, from_torch])
@pytest.mark.parametrize("bad", ["text", 1.5, object()])
def test_non_array_leaf_is_a_type_error_naming_the_path(fn, bad):
    with pytest.raises(TypeError, match=r"tree\['b'\]\[1\]"):
        fn({"a": np.zeros(2), "b": (np.zeros(1), bad)})


def test_importing_parity_does_not_import_torch():
    code = "import sys, funcdiff.parity; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr

"""Catalog cases: neural-network pieces and whole compositions (MLP, conv net, regression).

Layouts follow PyTorch: activations NC(H)(W), kernels OI(H)(W). The JAX side maps them with
``lax.conv_general_dilated(..., dimension_numbers=("NCHW", "OIHW", "NCHW"))`` and pools with
``lax.reduce_window``, so one set of arrays feeds both frameworks unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcdiff.parity._catalog_math import (
    KINK,
    KINK_ROWS,
    F,
    T,
    _reg_data,
    _reg_loss_jax,
    _reg_loss_torch,
    distinct,
    fixed,
    normal,
    one,
)

Entry = tuple[Any, ...]
EPS = 1e-5


def _act(name: str, jf: Any, tf: Any, tags: tuple[str, ...] = KINK, **opts: Any) -> Entry:
    return (
        f"nn/{name}",
        jf,
        tf,
        one(lambda r, d: normal(r, d, 3, 4, scale=2.0)),
        {"tags": tags, **opts},
    )


# ---- pieces ----------------------------------------------------------------------------------


def _layer_norm_jax(x: Any, w: Any, b: Any) -> Any:
    m = jnp.mean(x, axis=-1, keepdims=True)
    v = jnp.var(x, axis=-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + EPS) * w + b


def _batch_norm_jax(x: Any, w: Any, b: Any) -> Any:
    m = jnp.mean(x, axis=0)
    v = jnp.var(x, axis=0)
    return (x - m) / jnp.sqrt(v + EPS) * w + b


def _ce_jax(logits: Any, labels: Any) -> Any:
    lp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(lp, labels[:, None], axis=-1))


def _ce_soft_jax(logits: Any, probs: Any) -> Any:
    return -jnp.mean(jnp.sum(probs * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def _bce_logits_jax(z: Any, y: Any) -> Any:
    return jnp.mean(jax.nn.softplus(z) - y * z)


def _smooth_l1_jax(a: Any, b: Any) -> Any:
    d = jnp.abs(a - b)
    return jnp.mean(jnp.where(d < 1.0, 0.5 * d**2, d - 0.5))


def _conv(x: Any, w: Any, *, stride: int = 1, pad: int = 0, dil: int = 1) -> Any:
    nd = x.ndim - 2
    spec = ("NCH", "OIH", "NCH") if nd == 1 else ("NCHW", "OIHW", "NCHW")
    return lax.conv_general_dilated(
        x, w, (stride,) * nd, [(pad, pad)] * nd, rhs_dilation=(dil,) * nd, dimension_numbers=spec
    )


def _conv1d_jax(x: Any, w: Any, b: Any) -> Any:
    return _conv(x, w, pad=1) + b[None, :, None]


def _conv2d_jax(x: Any, w: Any, b: Any) -> Any:
    return _conv(x, w, pad=1) + b[None, :, None, None]


def _pool(x: Any, op: Any, init: float, k: int) -> Any:
    return lax.reduce_window(x, init, op, (1, 1, k, k), (1, 1, k, k), "VALID")


def _attention_jax(q: Any, k: Any, v: Any, causal: bool = False) -> Any:
    s = q @ jnp.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = jnp.where(jnp.tril(jnp.ones((n, n), dtype=bool)), s, -jnp.inf)
    return jax.nn.softmax(s, axis=-1) @ v


def _rand(*shapes: tuple[int, ...], scale: float = 1.0) -> Any:
    return lambda r, d: tuple(normal(r, d, *s, scale=scale) for s in shapes)


def _labels(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    return normal(r, d, 4, 5), r.integers(0, 5, 4).astype(np.int64)


def _soft_targets(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    p = r.uniform(0.1, 1.0, (4, 5))
    return normal(r, d, 4, 5), (p / p.sum(-1, keepdims=True)).astype(d)


def _norm_args(shape: tuple[int, ...], feat: int) -> Any:
    return lambda r, d: (
        normal(r, d, *shape),
        (1 + 0.2 * r.standard_normal(feat)).astype(d),
        normal(r, d, feat, scale=0.2),
    )


def _bce_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    return normal(r, d, 6), r.uniform(0, 1, 6).astype(d)


def _smooth_l1_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    a = normal(r, d, 8)
    diff = np.where(r.uniform(size=8) < 0.5, 1, -1) * r.choice([0.3, 0.6, 1.5, 2.5], 8)
    return a, (a + diff).astype(d)


def _embedding_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    return normal(r, d, 10, 4), r.permutation(10)[:5].astype(np.int64)


def pieces() -> list[Entry]:
    sdpa = lambda q, k, v: F().scaled_dot_product_attention(q, k, v)
    sdpa_c = lambda q, k, v: F().scaled_dot_product_attention(q, k, v, is_causal=True)
    return [
        (
            "nn/softmax",
            lambda x: jax.nn.softmax(x, axis=-1),
            lambda x: T().softmax(x, -1),
            one(lambda r, d: normal(r, d, 3, 5)),
            {"tags": KINK_ROWS},
        ),
        (
            "nn/log_softmax",
            lambda x: jax.nn.log_softmax(x, axis=-1),
            lambda x: T().log_softmax(x, -1),
            one(lambda r, d: normal(r, d, 3, 5)),
            {"tags": KINK_ROWS},
        ),
        ("nn/cross_entropy", _ce_jax, lambda z, y: F().cross_entropy(z, y), _labels),
        (
            "nn/cross_entropy_soft",
            _ce_soft_jax,
            lambda z, p: F().cross_entropy(z, p),
            _soft_targets,
        ),
        (
            "nn/bce_with_logits",
            _bce_logits_jax,
            lambda z, y: F().binary_cross_entropy_with_logits(z, y),
            _bce_args,
        ),
        (
            "nn/mse_loss",
            lambda a, b: jnp.mean((a - b) ** 2),
            lambda a, b: F().mse_loss(a, b),
            _rand((6,), (6,)),
        ),
        (
            "nn/l1_loss",
            lambda a, b: jnp.mean(jnp.abs(a - b)),
            lambda a, b: F().l1_loss(a, b),
            _rand((6,), (6,)),
            {"tags": KINK},
        ),
        (
            "nn/smooth_l1_loss",
            _smooth_l1_jax,
            lambda a, b: F().smooth_l1_loss(a, b),
            _smooth_l1_args,
        ),
        (
            "nn/layer_norm",
            _layer_norm_jax,
            lambda x, w, b: F().layer_norm(x, (6,), w, b, EPS),
            _norm_args((3, 6), 6),
        ),
        (
            "nn/batch_norm_train",
            _batch_norm_jax,
            lambda x, w, b: F().batch_norm(x, None, None, w, b, training=True, eps=EPS),
            _norm_args((6, 4), 4),
        ),
        (
            "nn/linear",
            lambda x, w, b: x @ w.T + b,
            lambda x, w, b: F().linear(x, w, b),
            _rand((5, 4), (3, 4), (3,)),
        ),
        ("nn/embedding", lambda t, i: t[i], lambda t, i: F().embedding(i, t), _embedding_args),
        (
            "nn/normalize",
            lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True),
            lambda x: F().normalize(x, dim=-1),
            _rand((3, 4)),
        ),
        (
            "nn/cosine_similarity",
            lambda a, b: (
                jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1))
            ),
            lambda a, b: F().cosine_similarity(a, b, dim=-1),
            _rand((3, 4), (3, 4)),
        ),
        _act("relu", jax.nn.relu, lambda x: T().relu(x)),
        _act("relu6", jax.nn.relu6, lambda x: F().relu6(x)),
        _act("leaky_relu", jax.nn.leaky_relu, lambda x: F().leaky_relu(x)),
        _act("hardtanh", jax.nn.hard_tanh, lambda x: F().hardtanh(x)),
        _act(
            "hard_sigmoid",
            jax.nn.hard_sigmoid,
            lambda x: F().hardsigmoid(x),
            divergence="hardsigmoid-float64-slope",
        ),
        _act("hard_swish", jax.nn.hard_swish, lambda x: F().hardswish(x)),
        _act("elu", jax.nn.elu, lambda x: F().elu(x)),
        _act("celu", jax.nn.celu, lambda x: F().celu(x)),
        _act("selu", jax.nn.selu, lambda x: F().selu(x)),
        _act("silu", jax.nn.silu, lambda x: F().silu(x)),
        _act("softsign", jax.nn.soft_sign, lambda x: F().softsign(x)),
        _act("gelu_exact", lambda x: jax.nn.gelu(x, approximate=False), lambda x: F().gelu(x)),
        _act(
            "gelu_tanh",
            lambda x: jax.nn.gelu(x, approximate=True),
            lambda x: F().gelu(x, approximate="tanh"),
        ),
        _act(
            "gelu_default", jax.nn.gelu, lambda x: F().gelu(x), tags=(), divergence="gelu-default"
        ),
        (
            "nn/conv1d",
            _conv1d_jax,
            lambda x, w, b: F().conv1d(x, w, b, padding=1),
            _rand((2, 3, 8), (4, 3, 3), (4,), scale=0.5),
        ),
        (
            "nn/conv2d",
            _conv2d_jax,
            lambda x, w, b: F().conv2d(x, w, b, padding=1),
            _rand((2, 3, 5, 5), (4, 3, 3, 3), (4,), scale=0.5),
        ),
        (
            "nn/conv2d_strided",
            lambda x, w: _conv(x, w, stride=2),
            lambda x, w: F().conv2d(x, w, stride=2),
            _rand((1, 2, 7, 7), (3, 2, 3, 3), scale=0.5),
        ),
        (
            "nn/conv2d_dilated",
            lambda x, w: _conv(x, w, pad=2, dil=2),
            lambda x, w: F().conv2d(x, w, padding=2, dilation=2),
            _rand((1, 2, 6, 6), (2, 2, 3, 3), scale=0.5),
        ),
        (
            "nn/avg_pool2d",
            lambda x: _pool(x, lax.add, 0.0, 2) / 4,
            lambda x: F().avg_pool2d(x, 2),
            _rand((1, 2, 4, 4)),
        ),
        (
            "nn/max_pool2d",
            lambda x: _pool(x, lax.max, -jnp.inf, 2),
            lambda x: F().max_pool2d(x, 2),
            one(lambda r, d: distinct(r, d, 1, 2, 4, 4)),
        ),
        ("nn/attention", _attention_jax, sdpa, _rand((2, 4, 8), (2, 4, 8), (2, 4, 8))),
        (
            "nn/attention_causal",
            lambda q, k, v: _attention_jax(q, k, v, causal=True),
            sdpa_c,
            _rand((2, 4, 8), (2, 4, 8), (2, 4, 8)),
        ),
    ]


# ---- compositions ----------------------------------------------------------------------------


def _mlp_params(r: np.random.Generator, d: np.dtype) -> dict[str, Any]:
    return {
        "W1": normal(r, d, 8, 4, scale=0.5),
        "b1": normal(r, d, 8, scale=0.1),
        "W2": normal(r, d, 3, 8, scale=0.5),
        "b2": normal(r, d, 3, scale=0.1),
    }


def _mlp_jax(p: dict[str, Any], x: Any) -> Any:
    return jnp.tanh(x @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]


def _mlp_torch(p: dict[str, Any], x: Any) -> Any:
    return T().tanh(x @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]


def _mlp_loss_jax(p: dict[str, Any], x: Any, y: Any) -> Any:
    return _ce_jax(_mlp_jax(p, x), y)


def _mlp_loss_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    return F().cross_entropy(_mlp_torch(p, x), y)


def _mlp_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    return _mlp_params(r, d), normal(r, d, 5, 4)


def _mlp_loss_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    p, x = _mlp_args(r, d)
    return p, x, r.integers(0, 3, 5).astype(np.int64)


def _convnet_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    p = {
        "conv_w": normal(r, d, 3, 1, 3, 3, scale=0.5),
        "conv_b": normal(r, d, 3, scale=0.1),
        "fc_w": normal(r, d, 2, 12, scale=0.3),
        "fc_b": normal(r, d, 2, scale=0.1),
    }
    return p, normal(r, d, 2, 1, 6, 6)


def _convnet_jax(p: dict[str, Any], x: Any) -> Any:
    h = jax.nn.relu(_conv(x, p["conv_w"], pad=1) + p["conv_b"][None, :, None, None])
    h = _pool(h, lax.add, 0.0, 3) / 9
    z = h.reshape(h.shape[0], -1) @ p["fc_w"].T + p["fc_b"]
    return jnp.mean(z**2)


def _convnet_torch(p: dict[str, Any], x: Any) -> Any:
    h = T().relu(F().conv2d(x, p["conv_w"], p["conv_b"], padding=1))
    h = F().avg_pool2d(h, 3)
    z = F().linear(h.reshape(h.shape[0], -1), p["fc_w"], p["fc_b"])
    return (z**2).mean()


def _reg_sgd_jax(p: dict[str, Any], x: Any, y: Any) -> Any:
    for _ in range(5):
        g = jax.grad(_reg_loss_jax)(p, x, y)
        p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
    return p


def _reg_sgd_torch(p: dict[str, Any], x: Any, y: Any) -> Any:
    grad = T().func.grad(_reg_loss_torch)
    for _ in range(5):
        g = grad(p, x, y)
        p = {k: p[k] - 0.1 * g[k] for k in p}
    return p


def _block_args(r: np.random.Generator, d: np.dtype) -> tuple[Any, ...]:
    p = {k: normal(r, d, 8, 8, scale=0.3) for k in ("Wq", "Wk", "Wv")}
    p["ln_w"], p["ln_b"] = (1 + 0.1 * r.standard_normal(8)).astype(d), normal(r, d, 8, scale=0.1)
    return p, normal(r, d, 2, 4, 8)


def _block_jax(p: dict[str, Any], x: Any) -> Any:
    h = _layer_norm_jax(x, p["ln_w"], p["ln_b"])
    return x + _attention_jax(h @ p["Wq"], h @ p["Wk"], h @ p["Wv"], causal=True)


def _block_torch(p: dict[str, Any], x: Any) -> Any:
    h = F().layer_norm(x, (8,), p["ln_w"], p["ln_b"], EPS)
    return x + F().scaled_dot_product_attention(
        h @ p["Wq"], h @ p["Wk"], h @ p["Wv"], is_causal=True
    )


def compositions() -> list[Entry]:
    return [
        ("compositions/mlp", _mlp_jax, _mlp_torch, _mlp_args),
        ("compositions/mlp_loss", _mlp_loss_jax, _mlp_loss_torch, _mlp_loss_args),
        ("compositions/convnet", _convnet_jax, _convnet_torch, _convnet_args),
        ("compositions/attention_block", _block_jax, _block_torch, _block_args),
        (
            "compositions/regression_grad",
            jax.grad(_reg_loss_jax),
            lambda p, x, y: T().func.grad(_reg_loss_torch)(p, x, y),
            _reg_data,
        ),
        ("compositions/regression_sgd", _reg_sgd_jax, _reg_sgd_torch, _reg_data),
        (
            "compositions/tutorial_chain",
            lambda x: jnp.stack(jax.grad(lambda z: jnp.log(z[0] * z[1]) * jnp.sin(z[1]))(x)),
            lambda x: T().func.grad(lambda z: T().log(z[0] * z[1]) * T().sin(z[1]))(x),
            fixed((0.5, 0.75)),
        ),
    ]


def cases() -> list[Entry]:
    return [*pieces(), *compositions()]


__all__ = ["cases"]

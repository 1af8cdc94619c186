"""Porting ``torch.nn.TransformerEncoder`` to Flax NNX, checked layer by layer (compare_model).

The PyTorch side: ``nn.TransformerEncoder`` of two ``nn.TransformerEncoderLayer`` (d_model 32,
4 heads, feed-forward 64, exact GELU, no dropout, ``batch_first=True``), called with a key
padding mask, once post-norm (``norm_first=False``, torch's default) and once pre-norm. The NNX
port uses ``nnx.MultiHeadAttention`` and keeps what torch does and flax does not:

- the mask: torch's ``src_key_padding_mask`` is True where a key is *padding* (ignored); flax's
  ``mask`` is True where a query may *attend*. The port takes torch's mask and converts it
  (``~pad[:, None, None, :]``); passing it straight in attends only to the padding;
- LayerNorm epsilon 1e-5 (flax's default is 1e-6), GELU exact (``jax.nn.gelu`` defaults to the
  tanh approximation);
- an ``attention_fn`` whose softmax stays in the input dtype: flax's default goes through
  ``jax.nn.dot_product_attention``, which computes the softmax in float32 and caps a float64
  comparison at ~1e-8.

``load_torch_weights`` splits ``in_proj_weight`` into the query/key/value kernels (E, H, D) and
reshapes ``out_proj`` to (H, D, E); ``compare_model`` then compares every layer forward and
backward in float64 and float32.

Run:  PYTHONPATH=. python examples/port_transformer.py

Sample output:
TransformerEncoder, 2 layers, d_model 32, 4 heads, padding mask
weights OK: 24 torch tensors -> 32 JAX leaves (nnx), 10 layers aligned
norm_first=False float64: agrees True, 14 layers, 24 parameters
  max abs error: outputs 1e-15, activation grads 2e-15, param grads 7e-15
norm_first=False float32: agrees True, 14 layers, 24 parameters
  max abs error: outputs 7e-07, activation grads 8e-07, param grads 4e-06
norm_first=True  float64: agrees True, 14 layers, 24 parameters
  max abs error: outputs 1e-15, activation grads 9e-16, param grads 4e-15
norm_first=True  float32: agrees True, 14 layers, 24 parameters
  max abs error: outputs 7e-07, activation grads 5e-07, param grads 3e-06
planted bug, torch's mask passed as flax's: agrees False
  first divergence: layers.0.self_attn
  layers.0.self_attn: attention-mask-polarity
    torch: boolean masks: True = masked out
    JAX:   flax/jax boolean masks: True = attend
    fix:   pass ~mask to the JAX attention
"""

from __future__ import annotations

import argparse
import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import funcdiff
from funcdiff.parity import compare_model, load_torch_weights

D_MODEL, HEADS, FF, LAYERS = 32, 4, 64, 2


# ---- the PyTorch original -------------------------------------------------------------------


class TorchEncoder(torch.nn.TransformerEncoder):
    """``nn.TransformerEncoder``; ``forward(x, pad)`` with ``pad`` True at padding positions."""

    def __init__(self, norm_first: bool) -> None:
        layer = torch.nn.TransformerEncoderLayer(
            D_MODEL,
            HEADS,
            FF,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=norm_first,
        )
        # enable_nested_tensor=False: torch's inference fast path would zero padded positions.
        super().__init__(layer, LAYERS, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, src_key_padding_mask=pad)


# ---- the Flax NNX port ----------------------------------------------------------------------


def attention_in_input_dtype(query, key, value, mask=None, **_: object) -> jax.Array:
    """Scaled dot-product attention with the softmax in the inputs' dtype.

    Shapes as flax passes them: query/key/value (batch, length, heads, head_dim), mask
    broadcastable to (batch, heads, q_length, k_length), True where attention is allowed.
    """
    scale = 1.0 / math.sqrt(query.shape[-1])
    logits = jnp.einsum("...qhd,...khd->...hqk", query * scale, key)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value)


class EncoderLayer(nnx.Module):
    """``nn.TransformerEncoderLayer(batch_first=True, dropout=0, activation="gelu")``."""

    def __init__(self, norm_first: bool, *, dtype, rngs: nnx.Rngs) -> None:
        kw = {"dtype": dtype, "param_dtype": dtype, "rngs": rngs}
        self.norm_first = norm_first
        self.self_attn = nnx.MultiHeadAttention(
            HEADS,
            D_MODEL,
            D_MODEL,
            D_MODEL,
            decode=False,
            attention_fn=attention_in_input_dtype,
            **kw,
        )
        self.linear1 = nnx.Linear(D_MODEL, FF, **kw)
        self.linear2 = nnx.Linear(FF, D_MODEL, **kw)
        self.norm1 = nnx.LayerNorm(D_MODEL, epsilon=1e-5, **kw)
        self.norm2 = nnx.LayerNorm(D_MODEL, epsilon=1e-5, **kw)

    def _sa(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        return self.self_attn(x, mask=mask, deterministic=True)

    def _ff(self, x: jax.Array) -> jax.Array:
        return self.linear2(jax.nn.gelu(self.linear1(x), approximate=False))

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, mask))
        return self.norm2(x + self._ff(x))


class Encoder(nnx.Module):
    """The port of ``TorchEncoder``: same call, ``(x, pad)`` with torch's mask polarity."""

    def __init__(self, norm_first: bool, *, dtype=jnp.float32, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List(
            [EncoderLayer(norm_first, dtype=dtype, rngs=rngs) for _ in range(LAYERS)]
        )
        self.convert_mask = True  # False: the planted bug of main()

    def __call__(self, x: jax.Array, pad: jax.Array) -> jax.Array:
        pad = jnp.asarray(pad, bool)
        # torch: True = padding, ignored; flax: True = may attend. Shape (batch, 1, 1, keys).
        mask = (~pad if self.convert_mask else pad)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x


# ---- building both, and the comparison ------------------------------------------------------


def make_models(norm_first: bool, dtype: str = "float32", seed: int = 0):
    """The torch encoder and an NNX port with its own random weights.

    float64 models must be built inside ``funcdiff.scoped(x64=True)``.
    """
    torch.manual_seed(seed)
    torch_model = TorchEncoder(norm_first).to(getattr(torch, dtype))
    jax_model = Encoder(norm_first, dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed))
    return torch_model, jax_model


def make_inputs(batch: int = 3, length: int = 7, dtype: str = "float32", seed: int = 0):
    """``(x, pad)``: a batch of sequences and torch's key padding mask (True = padding).

    Sequence ``b`` has ``length - b`` real tokens, so every row but the first is padded.
    """
    x = np.random.default_rng(seed).standard_normal((batch, length, D_MODEL)).astype(dtype)
    pad = np.arange(length)[None, :] >= (length - np.arange(batch))[:, None]
    return x, pad


def compare(norm_first: bool, dtype: str, *, convert_mask: bool = True):
    """``(WeightMapping, ModelParityResult)`` of a fresh encoder and its NNX port.

    ``convert_mask=False`` plants the classic bug: torch's padding mask handed to flax as is.
    """
    with funcdiff.scoped(x64=dtype == "float64"):
        torch_model, jax_model = make_models(norm_first, dtype)
        mapping = load_torch_weights(jax_model, torch_model)
    jax_model.convert_mask = convert_mask
    x, pad = make_inputs(dtype=dtype)
    return mapping, compare_model(jax_model, torch_model, x, pad)


def print_bug(label: str, bad) -> None:
    """The verdict on a planted bug, and the convention check's first finding."""
    print(f"planted bug, {label}: agrees {bad.ok}")
    print(f"  first divergence: {bad.first_divergence}")
    for f in bad.diagnosis[:1]:
        print(textwrap.indent(str(f), "  "))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="store_true", help="print the float64 post-norm tree")
    parser.add_argument(
        "--dtype", choices=("float64", "float32"), action="append", help="only this dtype"
    )
    args = parser.parse_args(argv)
    dtypes = args.dtype or ("float64", "float32")
    print(f"TransformerEncoder, {LAYERS} layers, d_model {D_MODEL}, {HEADS} heads, padding mask")
    for norm_first in (False, True):
        for dtype in dtypes:
            mapping, result = compare(norm_first, dtype)
            if not norm_first and dtype == dtypes[0]:
                print(str(mapping).splitlines()[0])
                if args.tree:
                    print(result)
            print(f"norm_first={norm_first!s:<5} {dtype}: {result.summary()}")
    print_bug("torch's mask passed as flax's", compare(False, "float64", convert_mask=False)[1])


if __name__ == "__main__":
    main()

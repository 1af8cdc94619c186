"""Porting a small PyTorch model to JAX, checked leaf by leaf with ``funcdiff.parity.compare``.

The PyTorch model: a two-layer MLP with a layer norm, its parameters a nested dict (a pytree),
returning a tuple (log-probabilities, and a dict with the mean cross-entropy loss). The JAX port
is checked in float32 and float64: values, a VJP w.r.t. every parameter, a JVP, and for the
scalar loss the gradient and a Hessian-vector product. Then a planted porting bug (PyTorch's
``var`` is unbiased by default, layer norm's is not; the port "fixes" it with ``ddof=1``) is
caught, and the failing rows name the leaf and stage.

Run:  PYTHONPATH=. python examples/port_from_pytorch.py

Sample output:
float32: port agrees True, 9 rows, worst rel err 4e-05 (jvp out[0])
float64: port agrees True, 9 rows, worst rel err 4e-14 (jvp out[0])
planted bug caught: True (12 of 12 rows fail)
  value out                  at (): jax +1.4950, torch +1.5040
  grad  args[0]['fc1']['b']  at (8,): jax +0.1260, torch +0.1312
  grad  args[0]['fc1']['w']  at (1, 8): jax +0.1752, torch +0.1822
  grad  args[0]['fc2']['b']  at (0,): jax +0.1236, torch +0.1294
AssertionError: JAX and PyTorch disagree:
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcdiff.parity import compare

F = torch.nn.functional


# ---- the PyTorch original -------------------------------------------------------------------


def torch_model(params, x, labels):
    h = x @ params["fc1"]["w"] + params["fc1"]["b"]
    h = F.layer_norm(h, h.shape[-1:], eps=1e-5)
    h = F.gelu(h)  # exact erf gelu: PyTorch's default
    logits = h @ params["fc2"]["w"] + params["fc2"]["b"]
    logp = F.log_softmax(logits, dim=-1)
    return logp, {"loss": F.nll_loss(logp, labels)}


def torch_loss(params, x, labels):
    return torch_model(params, x, labels)[1]["loss"]


# ---- the JAX port ---------------------------------------------------------------------------


def layer_norm(h, eps=1e-5, ddof=0):
    mu = h.mean(-1, keepdims=True)
    return (h - mu) / jnp.sqrt(h.var(-1, keepdims=True, ddof=ddof) + eps)


def jax_model(params, x, labels, *, ddof=0):
    h = x @ params["fc1"]["w"] + params["fc1"]["b"]
    h = layer_norm(h, ddof=ddof)
    h = jax.nn.gelu(h, approximate=False)  # JAX defaults to the tanh approximation
    logits = h @ params["fc2"]["w"] + params["fc2"]["b"]
    logp = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
    return logp, {"loss": loss}


def jax_model_with_bug(params, x, labels):
    return jax_model(params, x, labels, ddof=1)


def init(rng, dtype, n_in=6, n_hidden=16, n_out=4, batch=8):
    params = {
        "fc1": {
            "w": rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in),
            "b": 0.1 * rng.standard_normal(n_hidden),
        },
        "fc2": {
            "w": rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden),
            "b": np.zeros(n_out),
        },
    }
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    labels = rng.integers(0, n_out, batch)  # int64 labels: compared as values, not differentiated
    return params, x, labels


def main() -> None:
    for dtype in (np.float32, np.float64):
        params, x, labels = init(np.random.default_rng(0), dtype)
        res = compare(jax_model, torch_model, params, x, labels)
        worst = max(res.rows, key=lambda r: r.max_rel_error)
        print(
            f"{np.dtype(dtype).name}: port agrees {res.ok}, {len(res.rows)} rows, worst rel err "
            f"{worst.max_rel_error:.0e} ({worst.quantity} {worst.path})"
        )

    # The planted bug: an unbiased variance inside the layer norm.
    params, x, labels = init(np.random.default_rng(0), np.float32)
    loss = compare(
        lambda p, x, y: jax_model_with_bug(p, x, y)[1]["loss"], torch_loss, params, x, labels
    )
    print(f"planted bug caught: {not loss.ok} ({len(loss.failures)} of {len(loss.rows)} rows fail)")
    for r in loss.failures[:4]:  # str(loss) prints the full table
        print(
            f"  {r.quantity:5} {r.path:20} at {r.worst_index}: jax {r.jax_value:+.4f}, "
            f"torch {r.torch_value:+.4f}"
        )
    loss.assert_ok()  # in a test suite, this is the line that fails


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"AssertionError: {str(e).splitlines()[0]}")

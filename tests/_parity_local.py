"""A few small local catalog cases (the ``Case`` contract) for the runner and CLI tests.

Built lazily so that importing this module never imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    jax_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    make_args: Callable[[np.random.Generator, np.dtype], tuple[Any, ...]]
    divergence: str | None = None
    rtol: float | None = None
    atol: float | None = None
    tags: tuple[str, ...] = ()


def normal(*shape: int) -> Callable[[np.random.Generator, np.dtype], tuple[Any, ...]]:
    return lambda rng, dtype: (rng.standard_normal(shape).astype(dtype),)


def good_cases() -> tuple[Case, ...]:
    import torch

    def jmlp(p, x):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return (h @ p["w2"]).sum(), h

    def tmlp(p, x):
        h = torch.tanh(x @ p["w1"] + p["b1"])
        return (h @ p["w2"]).sum(), h

    def mlp_args(rng, dtype):
        p = {
            "w1": rng.standard_normal((3, 4)),
            "b1": rng.standard_normal(4),
            "w2": rng.standard_normal((4, 2)),
        }
        return jax.tree.map(lambda a: a.astype(dtype), p), rng.standard_normal((5, 3)).astype(dtype)

    return (
        Case("elementwise/exp", jnp.exp, torch.exp, normal(5)),
        Case("reduction/var", lambda x: jnp.var(x, ddof=1), lambda x: torch.var(x), normal(6)),
        Case("composition/mlp", jmlp, tmlp, mlp_args),
    )


def bad_cases() -> tuple[Case, ...]:
    import torch

    def boom(x):
        raise RuntimeError("twin exploded")

    return (
        # registered: abs at 0 has gradient 1 in JAX, 0 in PyTorch
        Case(
            "kink/abs",
            lambda x: jnp.abs(x).sum(),
            lambda x: torch.abs(x).sum(),
            lambda rng, dtype: (np.zeros(3, dtype),),
            divergence="abs_at_zero",
        ),
        # unregistered: tanh-approximate gelu against the exact one
        Case("nn/gelu_wrong", jax.nn.gelu, torch.nn.functional.gelu, normal(8)),
        Case("broken/raises", jnp.sin, boom, normal(2)),
    )

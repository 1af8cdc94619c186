"""Layout rules for Flax NNX layers (the table is in :mod:`._layouts`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from funcdiff.parity.models._frameworks import JaxLayer
from funcdiff.parity.models._layout_base import (
    Arrays,
    Incompatible,
    LayerPlan,
    NotRepresentable,
    Piece,
    TorchLayer,
    as_is,
    back_transpose,
    bn_dropped,
    chunk_sum,
    chunk_t,
    conv_perm,
    gates,
    gru_bias,
    mha_export,
    mha_parts,
    need,
    one_to_one,
    same_shape,
    sum2,
    then_reshape,
    then_t_reshape,
    transpose,
)

__all__ = [
    "nnx_batchnorm",
    "nnx_conv",
    "nnx_conv_transpose",
    "nnx_embed",
    "nnx_gru",
    "nnx_linear",
    "nnx_linear_general",
    "nnx_lstm",
    "nnx_mha",
    "nnx_norm",
    "nnx_optimized_lstm",
]

# ------------------------------------------------------------------------------------ NNX rules


def nnx_linear(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return one_to_one(
        jl,
        tl,
        [
            ("kernel", "weight", "weight.T", transpose, back_transpose),
            ("bias", "bias", "as is", as_is, same_shape),
        ],
    )


def nnx_linear_general(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    kshape = jl.leaves["kernel"].shape if "kernel" in jl.leaves else None
    bshape = jl.leaves["bias"].shape if "bias" in jl.leaves else ()
    if kshape is None or getattr(jl.module, "batch_axis", None) or _axes(jl.module) != (-1,):
        raise Incompatible("only nnx.LinearGeneral over the last axis maps onto a torch Linear")
    return one_to_one(
        jl,
        tl,
        [
            (
                "kernel",
                "weight",
                f"weight.T.reshape{kshape}",
                partial(then_t_reshape, as_is, kshape),
                lambda k, like: k.reshape(like.shape[1], like.shape[0]).T,
            ),
            (
                "bias",
                "bias",
                f"bias.reshape{bshape}",
                partial(then_reshape, as_is, bshape),
                lambda b, like: b.reshape(like.shape),
            ),
        ],
    )


def _axes(module: Any) -> tuple[int, ...]:
    axis = getattr(module, "axis", -1)
    return tuple(axis) if isinstance(axis, tuple | list) else (axis,)


def nnx_conv(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    need(tl, "weight")
    nd = tl.tensors["weight"].ndim
    perm = conv_perm(nd)
    inv = tuple(int(i) for i in np.argsort(perm))
    return one_to_one(
        jl,
        tl,
        [
            (
                "kernel",
                "weight",
                f"weight.permute{perm}",
                lambda a: a[0].transpose(perm),
                lambda k, like: k.transpose(inv),
            ),
            ("bias", "bias", "as is", as_is, same_shape),
        ],
    )


def nnx_conv_transpose(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    need(tl, "weight")
    nd = tl.tensors["weight"].ndim
    sp = tuple(range(2, nd))
    if getattr(jl.module, "transpose_kernel", False):
        perm = (*sp, 1, 0)
        inv = tuple(int(i) for i in np.argsort(perm))
        rule = f"weight.permute{perm} (transpose_kernel=True)"
        load: Callable[[Arrays], np.ndarray] = lambda a: a[0].transpose(perm)
        back: Callable[..., np.ndarray] = lambda k, like: k.transpose(inv)
    else:
        perm = (*sp, 0, 1)
        inv = tuple(int(i) for i in np.argsort(perm))
        rule = f"flip(weight, {sp}).permute{perm}"
        load = lambda a: np.flip(a[0], sp).transpose(perm)
        back = lambda k, like: np.flip(k.transpose(inv), sp)
    return one_to_one(
        jl,
        tl,
        [("kernel", "weight", rule, load, back), ("bias", "bias", "as is", as_is, same_shape)],
    )


def nnx_embed(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return one_to_one(jl, tl, [("embedding", "weight", "as is", as_is, same_shape)])


def nnx_norm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return one_to_one(
        jl,
        tl,
        [
            ("scale", "weight", "weight", as_is, same_shape),
            ("bias", "bias", "as is", as_is, same_shape),
        ],
    )


def nnx_batchnorm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return one_to_one(
        jl,
        tl,
        [
            ("scale", "weight", "weight", as_is, same_shape),
            ("bias", "bias", "as is", as_is, same_shape),
            ("mean", "running_mean", "running_mean", as_is, same_shape),
            ("var", "running_var", "running_var", as_is, same_shape),
        ],
        dropped=bn_dropped(tl),
    )


def nnx_mha(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    parts = mha_parts(tl)
    names = {"q": "query", "k": "key", "v": "value"}
    pieces = []
    for p, jname in names.items():
        src, sl, label = parts[f"{p}.w"]
        shape = jl.leaves[f"{jname}.kernel"].shape if f"{jname}.kernel" in jl.leaves else None
        if shape is not None:
            pieces.append(
                Piece(
                    f"{jname}.kernel",
                    (src,),
                    f"{label}.T.reshape(E, H, D)",
                    partial(then_t_reshape, sl, shape),
                )
            )
        if f"{jname}.bias" in jl.leaves and f"{p}.b" in parts:
            bsrc, bsl, blabel = parts[f"{p}.b"]
            bshape = jl.leaves[f"{jname}.bias"].shape
            pieces.append(
                Piece(
                    f"{jname}.bias",
                    (bsrc,),
                    f"{blabel}.reshape(H, D)",
                    partial(then_reshape, bsl, bshape),
                )
            )
    if "out.kernel" in jl.leaves:
        need(tl, "out_proj.weight")
        s = jl.leaves["out.kernel"].shape
        pieces.append(
            Piece(
                "out.kernel",
                ("out_proj.weight",),
                "out_proj.weight.T.reshape(H, D, E)",
                partial(then_t_reshape, as_is, s),
            )
        )
    if "out.bias" in jl.leaves and "out_proj.bias" in tl.tensors:
        pieces.append(Piece("out.bias", ("out_proj.bias",), "as is", as_is))

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        w = {
            p: jax[f"{n}.kernel"].reshape(jax[f"{n}.kernel"].shape[0], -1).T
            for p, n in names.items()
            if f"{n}.kernel" in jax
        }
        b = {p: jax[f"{n}.bias"].reshape(-1) for p, n in names.items() if f"{n}.bias" in jax}
        out = mha_export(w, b, torch)
        if "out.kernel" in jax:
            k = jax["out.kernel"]
            out["out_proj.weight"] = k.reshape(-1, k.shape[-1]).T
        if "out.bias" in jax and "out_proj.bias" in torch:
            out["out_proj.bias"] = jax["out.bias"]
        return out

    return LayerPlan(pieces, export, {}, {})


def nnx_lstm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    need(tl, "weight_ih", "weight_hh")
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    pieces = []
    for g, (i_name, h_name) in enumerate([("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho")]):
        gate = "ifgo"[g]
        pieces.append(
            Piece(
                f"{i_name}.kernel",
                ("weight_ih",),
                f"weight_ih[{gate}].T",
                partial(chunk_t, n=4, i=g),
            )
        )
        pieces.append(
            Piece(
                f"{h_name}.kernel",
                ("weight_hh",),
                f"weight_hh[{gate}].T",
                partial(chunk_t, n=4, i=g),
            )
        )
        if has_bias and f"{h_name}.bias" in jl.leaves:
            pieces.append(
                Piece(
                    f"{h_name}.bias",
                    ("bias_ih", "bias_hh"),
                    f"bias_ih[{gate}] + bias_hh[{gate}]",
                    partial(chunk_sum, n=4, i=g),
                )
            )

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        ins, hs = ["ii", "if_", "ig", "io"], ["hi", "hf", "hg", "ho"]
        out = {
            "weight_ih": np.concatenate([jax[f"{n}.kernel"].T for n in ins], axis=0),
            "weight_hh": np.concatenate([jax[f"{n}.kernel"].T for n in hs], axis=0),
        }
        if has_bias and all(f"{n}.bias" in jax for n in hs):
            out["bias_ih"] = np.concatenate([jax[f"{n}.bias"] for n in hs], axis=0)
            out["bias_hh"] = out["bias_ih"] if grad else np.zeros_like(torch["bias_hh"])
        return out

    return LayerPlan(pieces, export, {}, {})


def _fused_rnn(
    jl: JaxLayer, tl: TorchLayer, ngates: int, bias_on: str, kernel_i: str, kernel_h: str
) -> LayerPlan:
    need(tl, "weight_ih", "weight_hh")
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    pieces = [
        Piece(kernel_i, ("weight_ih",), "weight_ih.T", transpose),
        Piece(kernel_h, ("weight_hh",), "weight_hh.T", transpose),
    ]
    gru = ngates == 3
    checks: list[Callable[[], None]] = []
    if has_bias and bias_on in jl.leaves:
        if gru:

            def check() -> None:
                if np.any(gates(tl.tensors["bias_hh"], 3)[2] != 0):
                    raise NotRepresentable(
                        f"torch GRU `{tl.name}` has a non-zero b_hn (bias_hh[n]), which sits "
                        "inside r * (W_hn h + b_hn); nnx.GRUCell has no bias there, so the port "
                        "cannot match. Use eqx.nn.GRUCell (its bias_n), a custom flax cell with "
                        "a hidden bias, or set b_hn to zero in torch before porting."
                    )

            checks.append(check)
            pieces.append(
                Piece(
                    bias_on,
                    ("bias_ih", "bias_hh"),
                    "(b_ir + b_hr, b_iz + b_hz, b_in); b_hn = 0",
                    gru_bias,
                )
            )
        else:
            pieces.append(Piece(bias_on, ("bias_ih", "bias_hh"), "bias_ih + bias_hh", sum2))

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        out = {"weight_ih": jax[kernel_i].T, "weight_hh": jax[kernel_h].T}
        if has_bias and bias_on in jax:
            out["bias_ih"] = jax[bias_on]
            if not grad:
                out["bias_hh"] = np.zeros_like(torch["bias_hh"])
            elif not gru:  # d(b_ih + b_hh): the same gradient for both
                out["bias_hh"] = jax[bias_on]
            # GRU gradients: b_hn is no JAX parameter, so bias_hh has no full gradient
        return out

    return LayerPlan(pieces, export, {}, {}, tuple(checks))


def nnx_optimized_lstm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _fused_rnn(jl, tl, 4, "dense_h.bias", "dense_i.kernel", "dense_h.kernel")


def nnx_gru(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _fused_rnn(jl, tl, 3, "dense_i.bias", "dense_i.kernel", "dense_h.kernel")

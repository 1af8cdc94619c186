"""Layout rules for Equinox layers (the table is in :mod:`._layouts`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from funcdiff.parity.models._frameworks import JaxLayer
from funcdiff.parity.models._layout_base import (
    LayerPlan,
    NotRepresentable,
    Piece,
    TorchLayer,
    as_is,
    bn_dropped,
    gates,
    gru_bias,
    mha_export,
    mha_parts,
    need,
    one_to_one,
    same_shape,
    sum2,
)

__all__ = [
    "eqx_as_is",
    "eqx_batchnorm",
    "eqx_conv",
    "eqx_conv_transpose",
    "eqx_gru",
    "eqx_lstm",
    "eqx_mha",
]

# -------------------------------------------------------------------------------- Equinox rules


def eqx_as_is(*pairs: tuple[str, str]) -> Callable[[JaxLayer, TorchLayer], LayerPlan]:
    def plan(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
        return one_to_one(jl, tl, [(j, t, "as is", as_is, same_shape) for j, t in pairs])

    return plan


def eqx_conv(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    bshape = jl.leaves["bias"].shape if "bias" in jl.leaves else None
    return one_to_one(
        jl,
        tl,
        [
            ("weight", "weight", "as is", as_is, same_shape),
            (
                "bias",
                "bias",
                f"bias.reshape{bshape}",
                lambda a: a[0].reshape(bshape),
                lambda b, like: b.reshape(like.shape),
            ),
        ],
    )


def eqx_conv_transpose(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    need(tl, "weight")
    if getattr(tl.module, "groups", 1) != 1 or getattr(jl.module, "groups", 1) != 1:
        raise NotRepresentable(
            f"ConvTranspose `{tl.name}` with groups > 1: the layout for eqx.nn.ConvTranspose "
            "with groups is not built in; port it with groups=1 or load it by hand."
        )
    sp = tuple(range(2, tl.tensors["weight"].ndim))
    bshape = jl.leaves["bias"].shape if "bias" in jl.leaves else None
    return one_to_one(
        jl,
        tl,
        [
            (
                "weight",
                "weight",
                f"flip(weight, {sp}).swapaxes(0, 1)",
                lambda a: np.flip(a[0], sp).swapaxes(0, 1),
                lambda w, like: np.flip(w.swapaxes(0, 1), sp),
            ),
            (
                "bias",
                "bias",
                f"bias.reshape{bshape}",
                lambda a: a[0].reshape(bshape),
                lambda b, like: b.reshape(like.shape),
            ),
        ],
    )


def eqx_batchnorm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    mode = getattr(jl.module, "mode", "ema")
    stats = "ema_state_index" if mode == "ema" else "batch_state_index"
    plan = one_to_one(
        jl,
        tl,
        [
            ("weight", "weight", "as is", as_is, same_shape),
            ("bias", "bias", "as is", as_is, same_shape),
            (f"{stats}.0", "running_mean", "running_mean -> state", as_is, same_shape),
            (f"{stats}.1", "running_var", "running_var -> state", as_is, same_shape),
        ],
        dropped=bn_dropped(tl),
    )
    if mode == "ema" and "ema_first_time_index" in jl.leaves:
        plan.extras["ema_first_time_index"] = (
            np.array(False),
            "set to False so the loaded running statistics are used",
        )
    if mode != "ema" and "batch_counter" in jl.leaves:
        leaf = jl.leaves["batch_counter"]
        plan.extras["batch_counter"] = (
            np.zeros(leaf.shape, leaf.dtype),
            "set to 0 so inference uses the loaded running statistics without debiasing",
        )
    return plan


def eqx_mha(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    parts = mha_parts(tl)
    names = {"q": "query_proj", "k": "key_proj", "v": "value_proj"}
    pieces = []
    for p, jname in names.items():
        src, sl, label = parts[f"{p}.w"]
        if f"{jname}.weight" in jl.leaves:
            pieces.append(Piece(f"{jname}.weight", (src,), label, sl))
        if f"{jname}.bias" in jl.leaves and f"{p}.b" in parts:
            bsrc, bsl, blabel = parts[f"{p}.b"]
            pieces.append(Piece(f"{jname}.bias", (bsrc,), blabel, bsl))
    need(tl, "out_proj.weight")
    pieces.append(Piece("output_proj.weight", ("out_proj.weight",), "as is", as_is))
    if "output_proj.bias" in jl.leaves and "out_proj.bias" in tl.tensors:
        pieces.append(Piece("output_proj.bias", ("out_proj.bias",), "as is", as_is))

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        w = {p: jax[f"{n}.weight"] for p, n in names.items() if f"{n}.weight" in jax}
        b = {p: jax[f"{n}.bias"] for p, n in names.items() if f"{n}.bias" in jax}
        out = mha_export(w, b, torch)
        out["out_proj.weight"] = jax["output_proj.weight"]
        if "output_proj.bias" in jax and "out_proj.bias" in torch:
            out["out_proj.bias"] = jax["output_proj.bias"]
        return out

    return LayerPlan(pieces, export, {}, {})


def eqx_lstm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    need(tl, "weight_ih", "weight_hh")
    pieces = [
        Piece("weight_ih", ("weight_ih",), "as is", as_is),
        Piece("weight_hh", ("weight_hh",), "as is", as_is),
    ]
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    if has_bias and "bias" in jl.leaves:
        pieces.append(Piece("bias", ("bias_ih", "bias_hh"), "bias_ih + bias_hh", sum2))

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        out = {"weight_ih": jax["weight_ih"], "weight_hh": jax["weight_hh"]}
        if has_bias and "bias" in jax:
            out["bias_ih"] = jax["bias"]
            out["bias_hh"] = jax["bias"] if grad else np.zeros_like(torch["bias_hh"])
        return out

    return LayerPlan(pieces, export, {}, {})


def eqx_gru(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    need(tl, "weight_ih", "weight_hh")
    pieces = [
        Piece("weight_ih", ("weight_ih",), "as is", as_is),
        Piece("weight_hh", ("weight_hh",), "as is", as_is),
    ]
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    if has_bias and "bias" in jl.leaves:
        pieces.append(
            Piece(
                "bias",
                ("bias_ih", "bias_hh"),
                "(b_ir + b_hr, b_iz + b_hz, b_in)",
                gru_bias,
            )
        )
    if has_bias and "bias_n" in jl.leaves:
        pieces.append(Piece("bias_n", ("bias_hh",), "b_hn", lambda a: gates(a[0], 3)[2]))

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        out = {"weight_ih": jax["weight_ih"], "weight_hh": jax["weight_hh"]}
        if has_bias and "bias" in jax:
            out["bias_ih"] = jax["bias"]
            hh = np.zeros_like(torch["bias_hh"])
            h = len(hh) // 3
            if grad:  # d(b_ir + b_hr) is the same for both; likewise z
                hh[: 2 * h] = jax["bias"][: 2 * h]
            if "bias_n" in jax:
                hh[2 * h :] = jax["bias_n"]
            out["bias_hh"] = hh
        return out

    return LayerPlan(pieces, export, {}, {})

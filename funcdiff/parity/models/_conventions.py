"""The convention check: settings of aligned layer pairs that silently change a port's numbers.

Each rule reads the torch module's settings and the JAX layer's (its attributes, its weights
against torch's, or its jaxpr on the recorded input) and returns a :class:`Finding` naming the
divergence-registry entry that documents the convention:

=========================  ================================================  ====================
rule                       when                                              registry entry
=========================  ================================================  ====================
strided-same-padding       torch symmetric ``padding=p``, stride > 1; JAX    strided-same-padding
                           ``padding='SAME'``
norm-epsilon               eps differs (flax 1e-6 default, torch 1e-5)       flax-norm-epsilon
batchnorm-momentum         flax/eqx momentum != 1 - torch momentum           batchnorm-momentum
batchnorm-running-var      train mode with ``nnx.BatchNorm`` (biased var)    batchnorm-running-var
equinox-batchnorm-ema      ``eqx.nn.BatchNorm(mode="ema")``                  equinox-batchnorm-ema
gelu-approximation         erf in one, tanh in the other (jaxpr)             gelu-default
avg-pool-count-include-    torch ``count_include_pad=False`` with padding,   avg-pool-count-
pad                        JAX divides by the window size                    include-pad
pool-ceil-mode             torch ``ceil_mode=True``, JAX windows fewer       pool-ceil-mode
rnn-input-bias             torch ``bias_ih`` not folded into the JAX bias    rnn-input-bias
rnn-gate-order             JAX gate weights are torch's chunks permuted      rnn-gate-order
attention-mask-polarity    boolean masks on both sides, attention fails      attention-mask-
                                                                             polarity
lower-precision            float64 run, the JAX layer converts to float32    flax-batchnorm-
                                                                             float32-stats /
                                                                             dot-product-
                                                                             attention-float32-
                                                                             softmax
bias-one-side              a bias in one framework only                      (porting mistake)
transposed-weight          a Linear weight loaded without its transpose      (porting mistake)
layer-order                the JAX model calls aligned layers in another     (porting mistake)
                           order
resize-antialias           ``F.interpolate`` downsampling, ``jax.image.      resize-antialias
                           resize`` antialiased the other way (functionals
                           only, :mod:`._functional`)
=========================  ================================================  ====================

Calls of torch functionals (``F.gelu``, ``F.layer_norm``, ``F.avg_pool*``, ``F.interpolate``)
outside aligned leaf modules are checked by :mod:`._functional` against the JAX code around
the aligned twin, with the same rule names.

Examples:
  >>> from funcdiff.parity.models._conventions import RULES
  >>> RULES["norm-epsilon"]
  'flax-norm-epsilon'
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from funcdiff.parity.models._report import Finding

__all__ = ["RULES", "check_conventions", "suspect"]

RULES = {
    "strided-same-padding": "strided-same-padding",
    "norm-epsilon": "flax-norm-epsilon",
    "batchnorm-momentum": "batchnorm-momentum",
    "batchnorm-running-var": "batchnorm-running-var",
    "equinox-batchnorm-ema": "equinox-batchnorm-ema",
    "gelu-approximation": "gelu-default",
    "avg-pool-count-include-pad": "avg-pool-count-include-pad",
    "pool-ceil-mode": "pool-ceil-mode",
    "rnn-input-bias": "rnn-input-bias",
    "rnn-gate-order": "rnn-gate-order",
    "attention-mask-polarity": "attention-mask-polarity",
    "lower-precision": "flax-batchnorm-float32-stats",
    "resize-antialias": "resize-antialias",
    "bias-one-side": "",
    "transposed-weight": "",
    "layer-order": "",
}


def _np(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    v = x.get_value() if hasattr(x, "get_value") else x
    try:
        return np.asarray(v)
    except Exception:
        return None


def _f(layer: str, rule: str, t: str, j: str, fix: str, entry: str | None = None) -> Finding:
    return Finding(layer, rule, t, j, fix, RULES[rule] if entry is None else entry)


def _eqs(jaxpr: Any) -> list[Any]:
    out = []
    for e in jaxpr.eqns:
        out.append(e)
        for p in e.params.values():
            for sub in p if isinstance(p, tuple | list) else (p,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    out.extend(_eqs(getattr(inner, "jaxpr", inner)))
    return out


def _layer_jaxpr(prog: Any, rec: Any, key: str, path: str) -> Any:
    """The JAX layer's jaxpr on abstract inputs shaped as in its recorded call (masks too)."""
    info = rec.calls.get(key)
    layer = prog.modules.get(path)
    if info is None or layer is None or not info.specs:
        return None
    where = [i for i, s in enumerate(info.specs) if s is not None]

    def call(*arrays: Any) -> Any:
        leaves = list(info.leaves)
        for i, a in zip(where, arrays, strict=True):
            leaves[i] = a
        args, kwargs = jax.tree_util.tree_unflatten(info.treedef, leaves)
        return layer(*args, **kwargs)

    try:
        return jax.make_jaxpr(call)(*[info.specs[i] for i in where]).jaxpr
    except Exception:
        return None


def _torch_gelus(tm: Any) -> set[str]:
    return {m.approximate for m in tm.modules() if type(m).__name__ == "GELU"}


def _pad_ints(p: Any) -> tuple[int, ...] | None:
    if isinstance(p, str):
        return None
    return tuple(p) if isinstance(p, tuple | list) else (int(p),)


def check_conventions(
    pairs: list[tuple[str, str, str]],
    torch_module: Any,
    prog: Any,
    rec: Any,
    *,
    dtype: str,
    train: bool,
    trace_order: list[str],
    torch_order: list[str],
    model_layers: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every finding on the aligned pairs (see the module docstring); ``model_layers`` are the
    user's own JAX layers by path (before the copy was cast)."""
    out: list[Finding] = []
    model_layers = model_layers or {}
    for tname, jpath, kind in pairs:
        tm = torch_module.get_submodule(tname)
        jm = prog.modules.get(jpath)
        if jm is None:
            continue
        jt = type(jm).__name__
        out.extend(_static(tname, kind, tm, jm, jt, prog.framework, train))
        if dtype == "float64":
            out.extend(_low_leaves(tname, kind, model_layers.get(jpath), prog))
        jaxpr = _layer_jaxpr(prog, rec, jpath, jpath)
        if jaxpr is not None:
            out.extend(_from_jaxpr(tname, kind, tm, jaxpr, dtype, rec, jpath))
    out.extend(_layer_order(pairs, trace_order, torch_order))
    return out


def _low_leaves(tname: str, kind: str, jm: Any, prog: Any) -> list[Finding]:
    """Float32 statistics in the user's JAX layer (the compared copy is cast to float64, but
    the user's own float64 training would keep them float32)."""
    if jm is None:
        return []
    if prog.framework == "nnx":
        from flax import nnx

        leaves = {
            ".".join(map(str, p)): v.get_value()
            for p, v in nnx.iter_graph(jm)
            if isinstance(v, nnx.BatchStat) and len(p) == 1
        }
    else:
        return []
    low = sorted(
        k
        for k, v in leaves.items()
        if np.dtype(getattr(v, "dtype", np.float64)) in (np.float32, np.float16)
    )
    if not low:
        return []
    return [
        _f(
            tname,
            "lower-precision",
            "float64 statistics",
            f"float32 {', '.join(low)} (cast for this comparison)",
            "a BatchNorm whose statistics follow the input dtype (nnx.BatchNorm keeps float32)",
            "flax-batchnorm-float32-stats",
        )
    ]


def _static(
    tname: str, kind: str, tm: Any, jm: Any, jt: str, fw: str, train: bool
) -> list[Finding]:
    out: list[Finding] = []
    if kind in ("Linear",) or kind.startswith("Conv"):
        t_bias = getattr(tm, "bias", None) is not None
        j_bias = (
            getattr(jm, "bias", None) is not None and _np(getattr(jm, "bias", None)) is not None
        )
        if hasattr(jm, "use_bias"):
            j_bias = bool(jm.use_bias)
        if t_bias != j_bias:
            out.append(
                _f(
                    tname,
                    "bias-one-side",
                    f"bias={t_bias}",
                    f"bias={j_bias}",
                    "give both layers a bias or neither (nnx use_bias=..., eqx use_bias=...)",
                )
            )
    if kind == "Linear":
        w = _np(tm.weight)
        jw = _np(getattr(jm, "kernel", None)) if fw == "nnx" else _np(getattr(jm, "weight", None))
        if w is not None and jw is not None and w.shape[0] == w.shape[1] and jw.shape == w.shape:
            want = w.T if fw == "nnx" else w
            if not np.allclose(jw, want, rtol=1e-5, atol=1e-6) and np.allclose(
                jw, want.T, rtol=1e-5, atol=1e-6
            ):
                out.append(
                    _f(
                        tname,
                        "transposed-weight",
                        "weight (out, in)",
                        "kernel holds weight, not weight.T"
                        if fw == "nnx"
                        else "weight holds weight.T",
                        "load with load_torch_weights (nnx kernel = weight.T; eqx weight as is)",
                    )
                )
    if kind.startswith("Conv") and not kind.startswith("ConvTranspose"):
        stride = tuple(tm.stride)
        pad = _pad_ints(tm.padding)
        jpad = getattr(jm, "padding", None)
        if (
            isinstance(jpad, str)
            and jpad.upper() == "SAME"
            and pad
            and any(s > 1 for s in stride)
            and any(pad)
        ):
            out.append(
                _f(
                    tname,
                    "strided-same-padding",
                    f"padding={tm.padding} (symmetric), stride={tm.stride}",
                    "padding='SAME' (asymmetric when strided)",
                    f"padding={tuple((p, p) for p in pad)}",
                )
            )
    if "Norm" in kind:
        teps = getattr(tm, "eps", None)
        jeps = getattr(jm, "epsilon", getattr(jm, "eps", None))
        if (
            teps is not None
            and jeps is not None
            and not math.isclose(float(teps), float(jeps), rel_tol=1e-6)
        ):
            name = "epsilon" if hasattr(jm, "epsilon") else "eps"
            out.append(
                _f(
                    tname,
                    "norm-epsilon",
                    f"eps={teps:g}",
                    f"{name}={float(jeps):g}",
                    f"{jt}(..., {name}={teps:g})",
                )
            )
    if kind.startswith("BatchNorm"):
        tmom = tm.momentum
        jmom = getattr(jm, "momentum", None)
        if (
            tmom is not None
            and jmom is not None
            and not math.isclose(float(jmom), 1 - float(tmom), rel_tol=1e-6)
        ):
            out.append(
                _f(
                    tname,
                    "batchnorm-momentum",
                    f"momentum={tmom:g} (weight of the batch)",
                    f"momentum={float(jmom):g} (weight of the running value)",
                    f"momentum={1 - float(tmom):g}",
                )
            )
        if jt == "BatchNorm" and train:
            lib = "nnx.BatchNorm" if fw == "nnx" else "eqx.nn.BatchNorm"
            out.append(
                _f(
                    tname,
                    "batchnorm-running-var",
                    "running_var updated with the unbiased batch variance",
                    f"{lib} updates var with the biased batch variance",
                    "a BatchNorm that updates var with n/(n-1) times the batch variance",
                )
            )
        if fw == "equinox" and getattr(jm, "mode", None) == "ema":
            out.append(
                _f(
                    tname,
                    "equinox-batchnorm-ema",
                    "normalises training batches with batch statistics",
                    "mode='ema' normalises with running averages",
                    "eqx.nn.BatchNorm(..., mode='batch')",
                )
            )
    if kind in ("LSTM", "GRU"):
        out.extend(_rnn(tname, kind, tm, jm))
    return out


def _rnn(tname: str, kind: str, tm: Any, jm: Any) -> list[Finding]:
    cell = getattr(jm, "cell", None)
    if cell is None:  # a module stacking one nnx.RNN per torch layer: check the first layer
        layers = getattr(jm, "layers", None)
        first = layers[0] if layers is not None and len(layers) else jm
        cell = getattr(first, "cell", first)
    hsz = tm.hidden_size
    w_ih = _np(getattr(tm, "weight_ih_l0", None))
    if w_ih is None:
        return []
    n = 4 if kind == "LSTM" else 3
    chunks = [w_ih[k * hsz : (k + 1) * hsz] for k in range(n)]
    names = ("ii", "if_", "ig", "io") if kind == "LSTM" else ("ir", "iz", "in_")
    jk = [_np(getattr(getattr(cell, nm, None), "kernel", None)) for nm in names]
    fused = _np(getattr(getattr(cell, "dense_i", None), "kernel", None))
    if fused is not None and fused.shape[-1] == n * hsz:  # OptimizedLSTMCell, GRUCell
        jk = [fused[:, k * hsz : (k + 1) * hsz] for k in range(n)]
    out: list[Finding] = []
    if all(k is not None for k in jk):
        ks = [k.T for k in jk]  # type: ignore[union-attr]
        perm = [
            next(
                (
                    c
                    for c in range(n)
                    if ks[g].shape == chunks[c].shape and np.allclose(ks[g], chunks[c])
                ),
                -1,
            )
            for g in range(n)
        ]
        if -1 not in perm and perm != list(range(n)):
            order = "ifgo" if kind == "LSTM" else "rzn"
            out.append(
                _f(
                    tname,
                    "rnn-gate-order",
                    f"gates {', '.join(order)} in weight_ih chunks",
                    "JAX gates hold chunks " + ", ".join(order[p] for p in perm),
                    "split torch's weights in its gate order (load_torch_weights does)",
                )
            )
    if kind == "LSTM" and getattr(tm, "bias", False):
        b_ih, b_hh = _np(tm.bias_ih_l0), _np(tm.bias_hh_l0)
        hb = _np(getattr(getattr(cell, "hi", None), "bias", None))
        if (
            hb is not None
            and b_ih is not None
            and b_hh is not None
            and np.any(b_ih[:hsz] != 0)
            and not np.allclose(hb, b_ih[:hsz] + b_hh[:hsz], rtol=1e-5, atol=1e-6)
        ):
            out.append(
                _f(
                    tname,
                    "rnn-input-bias",
                    "bias_ih and bias_hh (two biases)",
                    "input Linears without bias; one bias per gate on the hidden side",
                    "set the hidden bias to bias_ih + bias_hh",
                )
            )
    return out


def _from_jaxpr(
    tname: str, kind: str, tm: Any, jaxpr: Any, dtype: str, rec: Any, jpath: str
) -> list[Finding]:
    out: list[Finding] = []
    eqs = _eqs(jaxpr)
    prims = [e.primitive.name for e in eqs]
    gelus = _torch_gelus(tm)
    if "none" in gelus and "tanh" in prims and "erf" not in prims:
        out.append(
            _f(
                tname,
                "gelu-approximation",
                "GELU(approximate='none') (erf)",
                "tanh approximation (jax.nn.gelu default)",
                "jax.nn.gelu(x, approximate=False)",
            )
        )
    if "tanh" in gelus and "erf" in prims:
        out.append(
            _f(
                tname,
                "gelu-approximation",
                "GELU(approximate='tanh')",
                "exact erf GELU",
                "jax.nn.gelu(x, approximate=True)",
            )
        )
    if kind.startswith("AvgPool") and not getattr(tm, "count_include_pad", True):
        pad = _pad_ints(tm.padding)
        sums = sum(1 for p in prims if p == "reduce_window_sum")
        if pad and any(pad) and sums == 1:
            out.append(
                _f(
                    tname,
                    "avg-pool-count-include-pad",
                    "count_include_pad=False",
                    "divides by the full window (padding counted)",
                    "flax avg_pool(..., count_include_pad=False)",
                )
            )
    if kind.startswith(("AvgPool", "MaxPool")) and getattr(tm, "ceil_mode", False):
        info = rec.calls.get(jpath)
        (jv,) = (rec.value(jpath),) if info else (None,)
        if jv is not None:
            out.append(
                _f(
                    tname,
                    "pool-ceil-mode",
                    "ceil_mode=True (a last partial window)",
                    f"output shape {tuple(jv.shape)}",
                    "pad the input on the right by stride - 1 (padding=((0, s-1),...))",
                )
            )
    if dtype == "float64":
        low = [
            e
            for e in eqs
            if e.primitive.name == "convert_element_type"
            and np.dtype(e.params.get("new_dtype", np.float64)) in (np.float32, np.float16)
        ]
        if low:
            attn = "Attention" in kind
            out.append(
                _f(
                    tname,
                    "lower-precision",
                    "computes in float64",
                    "converts to float32 inside ("
                    + ("softmax of jax.nn.dot_product_attention" if attn else "statistics")
                    + ")",
                    "an attention_fn that stays in the input dtype"
                    if attn
                    else "keep the statistics in the input dtype",
                    "dot-product-attention-float32-softmax"
                    if attn
                    else "flax-batchnorm-float32-stats",
                )
            )
    return out


def _layer_order(
    pairs: list[tuple[str, str, str]], trace_order: list[str], torch_order: list[str]
) -> list[Finding]:
    j2t = {j: t for t, j, _ in pairs}
    jseq = [j2t[k] for k in trace_order if k in j2t]
    tset = set(jseq)
    tseq = [k for k in torch_order if k in tset]
    if len(jseq) != len(tseq) or jseq == tseq:
        return []
    # JAX's trace order is post-order (a block after its children): compare leaves only
    leaves = [t for t in tseq if not any(o.startswith(t + ".") for o in tseq)]
    jl = [t for t in jseq if t in leaves]
    for a, b in zip(leaves, jl, strict=False):
        if a != b:
            return [
                Finding(
                    a,
                    "layer-order",
                    f"torch calls {a} before {b}",
                    f"the JAX model calls {b} before {a}",
                    "call the layers in torch's order in the JAX __call__",
                    "",
                )
            ]
    return []


def suspect(tname: str, tm: Any, row: Any) -> list[Finding]:
    """Torch-side settings of a failing layer whose JAX side cannot be read (a pure function)."""
    kind = type(tm).__name__
    out: list[Finding] = []
    if (
        kind.startswith("AvgPool")
        and not getattr(tm, "count_include_pad", True)
        and any(_pad_ints(tm.padding) or ())
    ):
        out.append(
            _f(
                tname,
                "avg-pool-count-include-pad",
                "count_include_pad=False",
                "not read from the JAX side",
                "flax avg_pool(..., count_include_pad=False)",
            )
        )
    if kind.startswith(("AvgPool", "MaxPool")) and getattr(tm, "ceil_mode", False):
        out.append(
            _f(
                tname,
                "pool-ceil-mode",
                "ceil_mode=True",
                "not read from the JAX side",
                "pad the input on the right by stride - 1",
            )
        )
    if (
        kind.startswith("Conv")
        and any(s > 1 for s in tm.stride)
        and any(_pad_ints(tm.padding) or ())
    ):
        out.append(
            _f(
                tname,
                "strided-same-padding",
                f"padding={tm.padding}, stride={tm.stride}",
                "not read from the JAX side",
                "explicit symmetric padding, not 'SAME'",
            )
        )
    if "Norm" in kind and hasattr(tm, "eps"):
        out.append(
            _f(
                tname,
                "norm-epsilon",
                f"eps={tm.eps:g}",
                "not read from the JAX side",
                f"epsilon={tm.eps:g}",
            )
        )
    if _torch_gelus(tm):
        out.append(
            _f(
                tname,
                "gelu-approximation",
                f"GELU approximate={sorted(_torch_gelus(tm))}",
                "not read from the JAX side",
                "jax.nn.gelu(x, approximate=False)",
            )
        )
    if kind == "MultiheadAttention":
        out.append(
            _f(
                tname,
                "attention-mask-polarity",
                "boolean masks: True = masked out",
                "flax/jax boolean masks: True = attend",
                "pass ~mask to the JAX attention",
            )
        )
    return out

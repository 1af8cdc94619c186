"""The rows of a whole-model comparison, and where the two models first part.

Given what both sides recorded (:mod:`._capture`), one :class:`LayerRow` per aligned layer
call (output, inputs, output gradient, isolated output), one :class:`ParamRow` per parameter
gradient and running statistic (torch's names and layouts), each measured with
:func:`funcdiff.parity._compare.compare_arrays`; then :func:`first_divergence`.

Examples:
  >>> from funcdiff.parity.models._rows import is_ancestor
  >>> is_ancestor("layer1", "layer1.0.conv1"), is_ancestor("layer1", "layer10")
  (True, False)
"""

from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._validation import is_float_dtype
from funcdiff.parity._compare import ParityRow, compare_arrays
from funcdiff.parity._torch import require_torch
from funcdiff.parity.models._instrument import layer_fn
from funcdiff.parity.models._pairing import act_to_jax, act_to_torch, best_layout, param_pairs
from funcdiff.parity.models._report import LayerRow, ParamRow

__all__ = ["first_divergence", "first_float", "is_ancestor", "layer_rows", "param_rows"]


def first_float(tree: Any) -> Any:
    return next(
        (
            v
            for v in jax.tree_util.tree_leaves(tree)
            if hasattr(v, "dtype") and is_float_dtype(np.dtype(v.dtype))
        ),
        None,
    )


def _row_or_none(
    kind: str,
    path: str,
    a: np.ndarray | None,
    b: np.ndarray | None,
    r: Any,
    t: Any,
    prefer: str | None = None,
) -> ParityRow | None:
    if a is None or b is None:
        return None
    return compare_arrays(
        kind, path, act_to_torch(a, b.shape, prefer), b, r, t, check_dtype=kind == "value"
    )


def _worst(rows: list[ParityRow]) -> ParityRow | None:
    if not rows:
        return None
    fails = [x for x in rows if not x.passed]
    return fails[0] if fails else max(rows, key=lambda x: x.excess)


def layer_rows(
    pairs, tc, rec, prog, xs, fidx, grads, out, r, a, isolate, notes, torch_module
) -> list[LayerRow]:
    rows: list[LayerRow] = []
    for n, i in enumerate(fidx):
        g = np.asarray(grads[n + 1])
        tg = tc.input_grads[i]
        rows.append(
            LayerRow(
                f"input[{i}]",
                f"input[{i}]",
                "input",
                None,
                None,
                _row_or_none("grad", f"input[{i}]", g, tg, r, a),
            )
        )
    kinds = {t: k for t, _, k in pairs}
    tj = {t: j for t, j, _ in pairs}
    for tkey in tc.pre_order:
        base, _, occ = tkey.partition("#")
        jpath = tj.get(base)
        if jpath is None:
            continue
        jkey = jpath if not occ else f"{jpath}#{occ}"
        jv, tv = rec.value(jkey), tc.values.get(tkey)
        note = "" if jv is not None else "not called on the JAX side"
        jins, tins = rec.layer_inputs(jkey), tc.inputs.get(tkey)
        # layouts: by shape, ties (equal sizes) broken by the smaller error
        pin = best_layout(jins[0], tins[0]) if jins and tins else None
        pref = best_layout(jv, tv) or pin
        fwd = _row_or_none("value", tkey, jv, tv, r, a, pref)
        grad = _row_or_none("grad", tkey, rec.grad(jkey), tc.grads.get(tkey), r, a, pref)
        inrow = None
        if jins is not None and tins is not None and len(jins) == len(tins) and jins:
            inrow = _worst(
                [
                    compare_arrays(
                        "value", f"{tkey} input", act_to_torch(j, t.shape, pref), t, r, a
                    )
                    for j, t in zip(jins, tins, strict=True)
                ]
            )
        iso = None
        if isolate and tv is not None and jins is not None and tins is not None:
            fn = layer_fn(prog, rec, jkey, jpath)
            if fn is None or len(jins) != len(tins):
                note = note or "not isolated (inputs could not be paired)"
            else:
                try:
                    conv = [
                        jnp.asarray(act_to_jax(t, j.shape, best_layout(j, t)))
                        for t, j in zip(tins, jins, strict=True)
                    ]
                    res = first_float(fn(*conv))
                    iso = compare_arrays(
                        "value",
                        f"{tkey} isolated",
                        act_to_torch(np.asarray(res), tv.shape, pref),
                        tv,
                        r,
                        a,
                    )
                except Exception as e:
                    note = f"isolated run failed: {type(e).__name__}: {str(e)[:80]}"
        rows.append(
            LayerRow(tkey, jkey, kinds.get(base, ""), fwd, iso, grad, inrow, base.count("."), note)
        )
    jleaves = [v for v in jax.tree_util.tree_leaves(out) if is_float_dtype(np.dtype(v.dtype))]
    for k, (jo, to) in enumerate(zip(jleaves, tc.outputs, strict=True)):
        name = "output" if len(tc.outputs) == 1 else f"output[{k}]"
        rows.append(
            LayerRow(
                name,
                name,
                "output",
                _row_or_none("value", name, np.asarray(jo), to, r, a),
                None,
                None,
            )
        )
    return rows


def _exported_grads(
    jax_model: Any, prog: Any, torch_module: Any, gpaths: dict[str, Any], wanted: list[str]
) -> dict[str, tuple[str, np.ndarray]]:
    """JAX gradients in torch's names and layouts by the weight alignment
    (``WeightMapping.to_torch(..., gradients=True)``: fused RNN gates, attention projections,
    summed biases, layouts the name pairing does not know). Empty when it cannot align."""
    from funcdiff.parity.models._weights import load_torch_weights

    try:
        if prog.framework == "nnx":
            from flax import nnx

            jax_model = nnx.clone(jax_model)  # the load below writes into it
        mapping = load_torch_weights(jax_model, torch_module, strict=False)
        grads = mapping.to_torch({p: np.asarray(g) for p, g in gpaths.items()}, gradients=True)
    except Exception:
        return {}
    rows: dict[str, list[Any]] = {}
    for row in mapping.rows:  # "a.bias_ih_l0 + a.bias_hh_l0": one JAX bias from two tensors
        for part in row.torch_name.split(" + "):
            rows.setdefault(part, []).append(row)
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name in wanted:
        mine = rows.get(name)
        if name in grads and mine:
            jpath = mine[0].jax_path if len(mine) == 1 else mine[0].jax_layer
            out[name] = (jpath, np.asarray(grads[name]))
    return out


def param_rows(
    pairs, tc, prog, pgrads, new_rest, torch_module, train, r, a, notes, jax_model=None
) -> list[ParamRow]:
    if prog.framework == "function":
        if tc.param_grads:
            notes.append("pure function: parameter gradients not compared (no JAX parameters)")
        return []
    out: list[ParamRow] = []
    gpaths = prog.param_paths(pgrads)
    matched, unmatched = param_pairs(pairs, torch_module, gpaths, prog)
    for tname, jpath, conv in matched:
        tg = tc.param_grads.get(tname)
        if tg is None:
            continue
        out.append(
            ParamRow(
                tname,
                jpath,
                "grad",
                compare_arrays(
                    "grad",
                    tname,
                    conv(np.asarray(gpaths[jpath]), tg.shape),
                    tg,
                    r,
                    a,
                    check_dtype=False,
                ),
            )
        )
    if unmatched:
        exported = _exported_grads(jax_model, prog, torch_module, gpaths, unmatched)
        for tname in list(unmatched):
            tg = tc.param_grads.get(tname)
            if tname not in exported or tg is None:
                continue
            jpath, g = exported[tname]
            out.append(
                ParamRow(
                    tname,
                    jpath,
                    "grad",
                    compare_arrays("grad", tname, g, tg, r, a, check_dtype=False),
                )
            )
            unmatched.remove(tname)
    if unmatched:
        notes.append(
            f"parameters not paired (gradients not compared): {', '.join(unmatched[:8])}"
            + (" ..." if len(unmatched) > 8 else "")
        )
    if train and tc.buffers:
        spaths = prog.param_paths(new_rest)
        smatched, _ = param_pairs(pairs, torch_module, spaths, prog, buffers=True)
        for tname, jpath, conv in smatched:
            tb = tc.buffers.get(tname)
            if tb is None:
                continue
            out.append(
                ParamRow(
                    tname,
                    jpath,
                    "state",
                    compare_arrays(
                        "state",
                        tname,
                        conv(np.asarray(spaths[jpath]), tb.shape),
                        tb,
                        r,
                        a,
                        check_dtype=False,
                    ),
                )
            )
        if prog.framework == "equinox" and isinstance(jax_model, tuple):  # state by export
            for tname, (jpath, v) in _exported_state(jax_model[0], new_rest, torch_module).items():
                tb = tc.buffers.get(tname)
                if tb is not None:
                    row = compare_arrays("state", tname, v, tb, r, a, check_dtype=False)
                    out.append(ParamRow(tname, jpath, "state", row))
        done = {p.torch_name for p in out if p.quantity == "state"}
        left = sorted(set(tc.buffers) - done)
        if left:
            notes.append(f"running statistics not compared: {', '.join(left)}")
    return out


def _exported_state(module: Any, state: Any, torch_module: Any) -> dict[str, tuple[str, Any]]:
    """Equinox running statistics after the step, in torch's names (``export_torch_weights``
    of the ``(module, new state)`` pair)."""
    from funcdiff.parity.models._weights import export_torch_weights, load_torch_weights

    try:
        torch = require_torch()
        leaf = first_float(state)
        tm = copy.deepcopy(torch_module).to(getattr(torch, np.dtype(leaf.dtype).name))
        sd = export_torch_weights((module, state), tm)
    except Exception:
        return {}
    try:
        mapping = load_torch_weights((module, state), tm, strict=False)
        rows = {row.torch_name: row.jax_path for row in mapping.rows}
    except Exception:
        rows = {}
    return {
        n: (rows.get(n, "?"), sd[n].detach().cpu().numpy())
        for n in sd
        if n.endswith(("running_mean", "running_var"))
    }


def first_divergence(rows: list[LayerRow], prows: list[ParamRow], pairs: Any) -> str | None:
    layers = [x for x in rows if x.kind not in ("input", "output")]
    # forward: post-order (a child finishes before its block), output fails, inputs pass
    post = sorted(layers, key=lambda x: _post_rank(x, layers))
    for x in post:
        if (
            x.forward is not None
            and not x.forward.passed
            and x.inputs is not None
            and x.inputs.passed
            and (x.isolated is None or not x.isolated.passed)
        ):
            return x.torch_name
    for x in post:
        if x.forward is not None and not x.forward.passed:
            return x.torch_name
    outs = [x for x in rows if x.kind == "output"]
    if any(x.forward is not None and not x.forward.passed for x in outs):
        return outs[0].torch_name
    # backward: the layer after the last (in execution order) bad activation gradient
    seq = [x for x in rows if x.kind == "input"] + post
    bad = [k for k, x in enumerate(seq) if x.grad is not None and not x.grad.passed]
    if bad:
        k = bad[-1]
        nxt = next(
            (
                x
                for x in seq[k + 1 :]
                if x.kind != "input" and not is_ancestor(x.torch_name, seq[k].torch_name)
            ),
            None,
        )
        if nxt is None:  # the gradient at the model output itself: the loss differs
            return next((x.torch_name for x in rows if x.kind == "output"), seq[k].torch_name)
        return nxt.torch_name
    for p in prows:
        if not p.passed:
            owners = [t for t, _, _ in pairs if p.torch_name.startswith(t + ".")]
            return max(owners, key=len) if owners else p.torch_name
    return None


def is_ancestor(a: str, b: str) -> bool:
    return b.startswith(a.split("#")[0] + ".")


def _post_rank(x: LayerRow, layers: list[LayerRow]) -> tuple[int, ...]:
    """Forward-hook order from pre-order: a block ranks after its last descendant."""
    idx = layers.index(x)
    last = idx
    for k in range(idx + 1, len(layers)):
        if is_ancestor(x.torch_name, layers[k].torch_name):
            last = k
        else:
            break
    return (last, -x.depth)

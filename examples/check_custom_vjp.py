"""Check a hand-written custom_vjp rule with funcdiff before trusting it.

A numerically stable softplus-sum with its own backward rule, once written correctly and once
with a planted 2% error in one element. ``check_grad`` passes the first in both modes and
fails the second in both; full mode names the wrong element.

Run: ``PYTHONPATH=. python examples/check_custom_vjp.py``

Sample output (float64):

    right rule, full mode: ok=True  max rel error 1.3e-10
    right rule, directional mode: ok=True
    planted rule, full mode: ok=False  worst <root>[5]: autodiff 0.7991 vs finite diff 0.7834
    planted rule, directional mode: ok=False  failed stages: VJP
    taylor test: right rule order 2.00, planted rule order 1.00

    check_grad (full): FAILED. autodiff = jax.grad(fun); finite differences = central ...
    leaf    shape  dtype    step       max abs err  max rel err  failed  kinks  status
    ------  -----  -------  ---------  -----------  -----------  ------  -----  ------
    <root>  8      float64  9.516e-04  0.0157       0.0196       1       0      FAIL
    worst first:
    where   index  autodiff  finite diff  abs err   rel err   tolerance    status
    ------  -----  --------  -----------  --------  --------  -----------  ------
    <root>  (5)    0.799089  0.783421     0.015668  0.019608  7.99869e-07  WRONG
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import funcdiff


def make_softplus_sum(wrong_index: int | None = None):
    """sum(log1p(exp(x))) with a custom backward rule (sigmoid), optionally off by 2%."""

    @jax.custom_vjp
    def softplus_sum(x):
        return jnp.sum(jnp.logaddexp(0.0, x))

    def fwd(x):
        return softplus_sum(x), x

    def bwd(x, g):
        d = jax.nn.sigmoid(x)
        if wrong_index is not None:
            d = d.at[wrong_index].multiply(1.02)
        return (g * d,)

    softplus_sum.defvjp(fwd, bwd)
    return softplus_sum


def main() -> dict[str, bool]:
    with funcdiff.scoped(x64=True):
        x = jnp.linspace(-3.0, 3.0, 8)
        right, planted = make_softplus_sum(), make_softplus_sum(wrong_index=5)

        r = funcdiff.check_grad(right, x)
        print(f"right rule, full mode: ok={r.ok}  max rel error {r.max_rel_error:.2g}")
        rd = funcdiff.check_grad(right, x, mode="directional", key=jax.random.key(1))
        print(f"right rule, directional mode: ok={rd.ok}")

        p = funcdiff.check_grad(planted, x)
        w = p.worst
        assert w is not None
        print(
            f"planted rule, full mode: ok={p.ok}  worst {w.path}{list(w.index)}: "
            f"autodiff {w.autodiff:.4f} vs finite diff {w.finite_diff:.4f}"
        )
        pd = funcdiff.check_grad(planted, x, mode="directional", key=jax.random.key(1))
        stages = sorted({e.path for e in pd.failures})
        print(f"planted rule, directional mode: ok={pd.ok}  failed stages: {', '.join(stages)}")

        t_right = funcdiff.taylor_test(right, x)
        t_planted = funcdiff.taylor_test(planted, x, v=jnp.zeros(8).at[5].set(1.0))
        print(
            f"taylor test: right rule order {t_right.order:.2f}, "
            f"planted rule order {t_planted.order:.2f}"
        )
        print()
        print(p)
    return {
        "right_full": r.ok,
        "right_directional": rd.ok,
        "planted_full": p.ok,
        "planted_directional": pd.ok,
        "planted_index": w.index == (5,),
        "taylor_right": t_right.ok,
        "taylor_planted": t_planted.ok,
    }


if __name__ == "__main__":
    main()

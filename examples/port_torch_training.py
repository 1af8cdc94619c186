"""The tutorial's training loop, once in PyTorch and once in JAX, from the same start.

PyTorch: ``torch.optim.SGD([b0, b1], lr=0.1)`` on the mean squared error of
``y = 2 + x + noise``, 500 full-batch epochs (the tutorial's loop, verbatim).
JAX: ``funcdiff.regression.fit(x, y, optimizer=parity.optax_like(torch_sgd), ...)`` on the same
data and the same starting parameters. Both loss curves and the final parameters are compared
in float32 (the tutorial's dtype) and in float64, where they agree to rounding.

Parameter order: ``fit``'s params ``{"intercept", "coef"}`` flatten to ``[coef, intercept]``
(``jax.tree_util`` sorts dict keys), so the torch optimizer is given ``[b1, b0]``; for one
param group of plain SGD the order does not change the updates, but for several groups it does.

Run:  PYTHONPATH=. python examples/port_torch_training.py [--plot losses.png]
(the plot needs matplotlib: the ``plot`` extra)

Sample output:
epoch  torch f32  jax f32   |Δ loss| f32  torch f64  jax f64   |Δ loss| f64
-----  ---------  --------  ------------  ---------  --------  ------------
0      5.638953   5.638953  4.76837e-07   5.638953   5.638953  0
1      3.968669   3.968669  4.76837e-07   3.968669   3.968669  4.44089e-16
10     1.065007   1.065007  0             1.065007   1.065007  2.22045e-16
100    1.012134   1.012134  1.19209e-07   1.012134   1.012134  0
499    1.012134   1.012134  1.19209e-07   1.012134   1.012134  2.22045e-16
final params  torch (b0, b1)            jax (intercept, coef)     max |Δ|
------------  ------------------------  ------------------------  -------
float32       (1.93420553, 1.01640403)  (1.93420553, 1.01640403)  0
float64       (1.93420573, 1.01640388)  (1.93420573, 1.01640388)  0
float64 loss curves agree to 4.4e-16 over 500 epochs: reproduced exactly.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from funcdiff import parity, regression
from funcdiff._config import scoped
from funcdiff._report import table

EPOCHS = 500


def tutorial_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tutorial's data and starting parameters, drawn once with torch's generator."""
    gen = torch.Generator().manual_seed(seed)
    n = 100
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    y = 2 + x + torch.randn(n, generator=gen, dtype=torch.float64)
    b = torch.randn(2, generator=gen, dtype=torch.float64)
    return x.numpy(), y.numpy(), b.numpy()


def train_torch(x, y, b, dtype):
    """The tutorial's loop, verbatim apart from recording the losses."""
    x_train, y_train = torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
    b0 = torch.nn.Parameter(torch.tensor([b[0]], dtype=dtype))
    b1 = torch.nn.Parameter(torch.tensor([b[1]], dtype=dtype))
    model = [b0, b1]
    # jax.tree_util order of fit's {"intercept", "coef"} is [coef, intercept]: see the header.
    optimizer = torch.optim.SGD([b1, b0], lr=0.1, foreach=False)
    tx = parity.optax_like(optimizer)  # read before the first step
    losses = []
    for _epoch in range(EPOCHS):
        optimizer.zero_grad()
        y_predicted = model[0] + model[1] * x_train
        loss = torch.mean((y_train - y_predicted) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return tx, np.array(losses), np.array([b0.item(), b1.item()])


def train_jax(x, y, b, tx, dtype):
    with scoped(x64=dtype == np.float64):
        result = regression.fit(
            x.astype(dtype),
            y.astype(dtype),
            optimizer=tx,
            epochs=EPOCHS,
            params={"intercept": b[0].astype(dtype), "coef": b[1].astype(dtype)},
            log_every=100,
        )
        p = result.params
        return np.asarray(result.losses), np.array([float(p["intercept"]), float(p["coef"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PATH", help="write the loss curves to PATH (png)")
    args = parser.parse_args(argv)
    x, y, b = tutorial_data()
    runs = {}
    for name, np_dtype, t_dtype in (
        ("f32", np.float32, torch.float32),
        ("f64", np.float64, torch.float64),
    ):
        tx, t_losses, t_params = train_torch(x, y, b, t_dtype)
        j_losses, j_params = train_jax(x, y, b, tx, np_dtype)
        runs[name] = (t_losses, j_losses, t_params, j_params)

    rows = []
    for epoch in (0, 1, 10, 100, EPOCHS - 1):
        row: list[object] = [epoch]
        for name in ("f32", "f64"):
            t_losses, j_losses = runs[name][:2]
            row += [t_losses[epoch], j_losses[epoch], abs(t_losses[epoch] - j_losses[epoch])]
        rows.append(row)
    headers = ["epoch"]
    for name in ("f32", "f64"):
        headers += [f"torch {name}", f"jax {name}", f"|Δ loss| {name}"]
    print(table(headers, rows, digits=6))
    params_rows = [
        [
            label,
            tuple(runs[k][2]),
            tuple(runs[k][3]),
            float(np.max(np.abs(runs[k][2] - runs[k][3]))),
        ]
        for label, k in (("float32", "f32"), ("float64", "f64"))
    ]
    headers = ["final params", "torch (b0, b1)", "jax (intercept, coef)", "max |Δ|"]
    print(table(headers, params_rows, digits=8))
    t64, j64 = runs["f64"][:2]
    worst = float(np.max(np.abs(t64 - j64)))
    verdict = "reproduced exactly" if worst < 1e-12 else "NOT reproduced"
    print(f"float64 loss curves agree to {worst:.1e} over {EPOCHS} epochs: {verdict}.")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        t32, j32 = runs["f32"][:2]
        ax1.plot(t32, label="PyTorch SGD(lr=0.1)", lw=3, alpha=0.5)
        ax1.plot(j32, "--", label="regression.fit(optax_like(SGD))")
        ax1.set(xscale="log", xlabel="epoch", ylabel="MSE loss", title="loss (float32)")
        ax1.legend()
        for name, dtype in (("f32", "float32"), ("f64", "float64")):
            t, j = runs[name][:2]
            ax2.semilogy(np.abs(t - j) + 1e-18, label=dtype)
        ax2.set(xlabel="epoch", ylabel="|Δ loss|", title="torch − jax")
        ax2.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    raise SystemExit(main())

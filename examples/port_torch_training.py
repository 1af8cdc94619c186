"""The tutorial's training loop, once in PyTorch and once in JAX, compared by compare_training.

PyTorch: the tutorial's model ``b0 + b1 * x`` (as an ``nn.Module`` holding ``b0`` and ``b1``)
trained by ``torch.optim.SGD(lr=0.1)`` on the mean squared error of ``y = 2 + x + noise``, 500
full-batch epochs. JAX: the same model as a function of a params dict keyed like the module's
``state_dict``. ``parity.compare_training`` copies the module and optimizer, loads torch's
starting parameters into the JAX side, builds ``optax_like(SGD)`` and steps both on the same
batch 500 times, comparing loss, gradients, updates and parameters at every epoch, in float32
(the tutorial's dtype, judged against the drift envelope) and in float64 (to rounding).

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
float32: final max |Δθ| 0.0e+00, max |Δgrad| 4.8e-07: agree
float64: final max |Δθ| 0.0e+00, max |Δgrad| 8.9e-16: agree
float64 loss curves agree to 4.4e-16 over 500 epochs: reproduced exactly.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from funcdiff import parity
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


class Line(torch.nn.Module):
    """The tutorial's model: two scalars."""

    def __init__(self, b: np.ndarray, dtype: torch.dtype) -> None:
        super().__init__()
        self.b0 = torch.nn.Parameter(torch.tensor([b[0]], dtype=dtype))
        self.b1 = torch.nn.Parameter(torch.tensor([b[1]], dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b0 + self.b1 * x


def line(params, x):
    return params["b0"] + params["b1"] * x


def train(x, y, b, dtype: torch.dtype) -> parity.TrainingParityResult:
    model = Line(b, dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, foreach=False)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return parity.compare_training(
        (line, params), None, model, optimizer, [(x, y)] * EPOCHS, loss="mse"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PATH", help="write the loss curves to PATH (png)")
    args = parser.parse_args(argv)
    x, y, b = tutorial_data()
    runs = {"f32": train(x, y, b, torch.float32), "f64": train(x, y, b, torch.float64)}
    rows = []
    for epoch in (0, 1, 10, 100, EPOCHS - 1):
        row: list[object] = [epoch]
        for name in ("f32", "f64"):
            s = runs[name].steps[epoch]
            row += [s.loss_torch, s.loss_jax, s.loss_error]
        rows.append(row)
    headers = ["epoch"]
    for name in ("f32", "f64"):
        headers += [f"torch {name}", f"jax {name}", f"|Δ loss| {name}"]
    print(table(headers, rows, digits=6))
    for res in runs.values():
        verdict = "agree" if res.ok else f"DIVERGE at epoch {res.first_divergent_step}"
        print(
            f"{res.dtype}: final max |Δθ| {res.steps[-1].param_error:.1e}, max |Δgrad| "
            f"{max(s.grad_error for s in res.steps):.1e}: {verdict}"
        )
    worst = max(s.loss_error for s in runs["f64"].steps)
    exact = worst < 1e-12 and runs["f64"].ok
    verdict = "reproduced exactly" if exact else "NOT reproduced"
    print(f"float64 loss curves agree to {worst:.1e} over {EPOCHS} epochs: {verdict}.")
    if args.plot:
        runs["f32"].plot(args.plot)
        print(f"plot written to {args.plot}")
    return 0 if exact and runs["f32"].ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Training-run parity: a CNN with BatchNorm and an MLP trained 200 steps in torch and JAX.

Two ports, each trained by ``parity.compare_training`` on the same synthetic batches:

- a small CNN (conv, BatchNorm, ReLU, stride-2 conv, BatchNorm, global mean, linear) with
  ``SGD(momentum=0.9, weight_decay=5e-4)`` and ``StepLR(step_size=50, gamma=0.5)``, cross
  entropy, train mode (BatchNorm running statistics compared every step);
- an MLP with ``AdamW(weight_decay=1e-2)``, ``CosineAnnealingLR(T_max=200)`` and
  ``clip_grad_norm=1.0``, mean squared error; once more as a Flax NNX module (``nnx.Linear``),
  whose weights ``compare_training`` loads with ``load_torch_weights``.

The other JAX ports are plain functions of a params dict keyed like torch's ``state_dict`` (the
``(apply_fn, params)`` form); ``tx`` is None, so the optax side is ``optax_like`` of the torch
optimizer and scheduler (plus torch's clipping). Each runs in float64 (must agree at every
step) and float32 (judged against the drift envelope, see docs/training_parity.md), free
running; the CNN also teacher-forced.

Run:  PYTHONPATH=. python examples/port_training.py [--plot PREFIX] [--steps N]

Sample output (steps/s from a 2-core machine shared with five other jobs, load average 6.8;
they vary several times with the load, see docs/training_parity.md):
cnn  float64 free   200 steps: OK   |Δθ| 1.0e-15 growth 1.008 torch 7/s jax 118/s
cnn  float64 forced 200 steps: OK   |Δθ| 1.1e-16 growth 0.982 torch 8/s jax 70/s
cnn  float32 free   200 steps: OK   |Δθ| 7.2e-07 growth 1.012 torch 30/s jax 741/s
mlp  float64 free   200 steps: OK   |Δθ| 1.2e-15 growth 1.002 torch 40/s jax 744/s
mlp  float32 free   200 steps: OK   |Δθ| 2.7e-06 growth 1.004 torch 22/s jax 369/s
nnx  float64 free   200 steps: OK   |Δθ| 1.2e-15 growth 1.002 torch 44/s jax 670/s
all runs agree: yes
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcdiff import parity
from funcdiff._config import scoped

# ----------------------------------------------------------------------------- the CNN


class SmallCNN(torch.nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def conv2d(x, w, b, stride, pad):
    y = jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return y + b[None, :, None, None]


def batch_norm(x, p, name, train, momentum=0.1, eps=1e-5):
    """torch.nn.BatchNorm2d: batch statistics in training, unbiased running variance."""
    w, b = p[f"{name}.weight"], p[f"{name}.bias"]
    rm, rv = p[f"{name}.running_mean"], p[f"{name}.running_var"]
    if train:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        n = x.size // x.shape[1]
        new = {
            f"{name}.running_mean": (1 - momentum) * rm + momentum * mean,
            f"{name}.running_var": (1 - momentum) * rv + momentum * var * n / (n - 1),
        }
    else:
        mean, var, new = rm, rv, {}
    y = (x - mean[None, :, None, None]) / jnp.sqrt(var[None, :, None, None] + eps)
    return y * w[None, :, None, None] + b[None, :, None, None], new


def cnn_apply(p, x, train=True):
    h, s1 = batch_norm(conv2d(x, p["conv1.weight"], p["conv1.bias"], 1, 1), p, "bn1", train)
    h = jax.nn.relu(h)
    h, s2 = batch_norm(conv2d(h, p["conv2.weight"], p["conv2.bias"], 2, 1), p, "bn2", train)
    h = jax.nn.relu(h).mean(axis=(2, 3))
    out = h @ p["fc.weight"].T + p["fc.bias"]
    return out, {**p, **s1, **s2}


def cnn_params(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items() if "num_batches" not in k}


# ----------------------------------------------------------------------------- the MLP


def make_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(10, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 3),
    )


def make_nnx_mlp(dtype):
    """The same MLP written with Flax NNX layers (weights loaded by load_torch_weights)."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            kw = {"param_dtype": dtype, "dtype": dtype, "rngs": rngs}
            self.l0, self.l2, self.l4 = (
                nnx.Linear(10, 32, **kw),
                nnx.Linear(32, 32, **kw),
                nnx.Linear(32, 3, **kw),
            )

        def __call__(self, x):
            return self.l4(jnp.tanh(self.l2(jnp.tanh(self.l0(x)))))

    with scoped(x64=dtype == jnp.float64):
        return MLP(nnx.Rngs(0))


def mlp_apply(p, x):
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"])
    h = jnp.tanh(h @ p["2.weight"].T + p["2.bias"])
    return h @ p["4.weight"].T + p["4.bias"]


# ----------------------------------------------------------------------------- data


def image_batches(steps: int, batch: int = 16, seed: int = 0):
    """Noisy 8x8 images whose class is the quadrant holding a bright blob."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        y = rng.integers(0, 4, batch)
        x = 0.3 * rng.normal(size=(batch, 1, 8, 8))
        for i, c in enumerate(y):
            r, q = divmod(int(c), 2)
            x[i, 0, 4 * r + 1 : 4 * r + 3, 4 * q + 1 : 4 * q + 3] += 1.5
        out.append((x, y))
    return out


def regression_batches(steps: int, batch: int = 32, seed: int = 1):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(10, 3)) / 3
    out = []
    for _ in range(steps):
        x = rng.normal(size=(batch, 10))
        out.append((x, np.sin(x @ w) + 0.05 * rng.normal(size=(batch, 3))))
    return out


# ----------------------------------------------------------------------------- runs


def run_cnn(dtype: torch.dtype, steps: int, teacher_forcing: bool = False):
    torch.manual_seed(0)
    net = SmallCNN().to(dtype)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
    return parity.compare_training(
        (cnn_apply, cnn_params(net)),
        None,
        net,
        opt,
        image_batches(steps),
        loss="cross_entropy",
        scheduler=sched,
        teacher_forcing=teacher_forcing,
    )


def run_mlp(dtype: torch.dtype, steps: int, nnx: bool = False):
    torch.manual_seed(1)
    net = make_mlp().to(dtype)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2, foreach=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    params = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    jdtype = jnp.float64 if dtype == torch.float64 else jnp.float32
    return parity.compare_training(
        make_nnx_mlp(jdtype) if nnx else (mlp_apply, params),
        None,
        net,
        opt,
        regression_batches(steps),
        loss="mse",
        scheduler=sched,
        clip_grad_norm=1.0,
    )


def summary(name: str, res: parity.TrainingParityResult) -> str:
    mode = "forced" if res.teacher_forcing else "free  "
    verdict = "OK  " if res.ok else f"FAILED at step {res.first_divergent_step}"
    g = res.drift.growth_per_step
    return (
        f"{name} {res.dtype} {mode} {len(res.steps)} steps: {verdict} "
        f"|Δθ| {np.max(res.drift.param_error):.1e} growth {'-' if g is None else f'{g:.3f}'} "
        f"torch {res.torch_steps_per_second:.0f}/s jax {res.jax_steps_per_second:.0f}/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PREFIX", help="write PREFIX_<run>.png plots")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    runs = [
        ("cnn ", run_cnn(torch.float64, args.steps)),
        ("cnn ", run_cnn(torch.float64, args.steps, teacher_forcing=True)),
        ("cnn ", run_cnn(torch.float32, args.steps)),
        ("mlp ", run_mlp(torch.float64, args.steps)),
        ("mlp ", run_mlp(torch.float32, args.steps)),
        ("nnx ", run_mlp(torch.float64, args.steps, nnx=True)),
    ]
    for name, res in runs:
        print(summary(name, res))
        if not res.ok:
            print(res)
        if args.plot:
            mode = "forced" if res.teacher_forcing else "free"
            res.plot(f"{args.plot}_{name.strip()}_{res.dtype}_{mode}.png")
    ok = all(r.ok for _, r in runs)
    print(f"all runs agree: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

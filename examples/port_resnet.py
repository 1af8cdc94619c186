"""Porting a ResNet-18 from PyTorch to Flax NNX, checked layer by layer with ``compare_model``.

The PyTorch side is written the way torchvision writes its BasicBlock ResNet (torchvision's
wheel does not load with the CPU torch build here): conv 7x7/2 with padding 3, BatchNorm, ReLU,
max-pool 3/2 with padding 1, four stages of two BasicBlocks (the first block of stages 2-4
downsamples with a 1x1 conv + BatchNorm), global average pool, fc. The NNX port keeps every
convention torch has and flax does not:

- explicit symmetric padding (``padding=((1, 1), (1, 1))``): flax's ``'SAME'`` pads a strided
  convolution asymmetrically and is off by O(1) at stride 2;
- BatchNorm with torch's momentum 0.1 (flax's ``momentum=0.9``), epsilon 1e-5, running
  statistics kept in the parameters' dtype (``nnx.BatchNorm`` keeps them in float32) and the
  running variance updated with the *unbiased* batch variance, as torch does
  (``nnx.BatchNorm`` uses the biased one);
- the model takes torch's NCHW input and transposes it once to NHWC.

The weights are copied with ``load_torch_weights`` (OIHW -> HWIO, weight -> scale,
running_mean/var -> mean/var, fc weight transposed), then ``compare_model`` runs both models
forward and backward and compares every layer's output, every parameter's gradient (named by
its torch name) and every layer's activation gradient, in float64 and float32, eval and train
mode (train: batch statistics and the updated running statistics).

Run:  PYTHONPATH=. python examples/port_resnet.py [--batch 4] [--size 64]

Sample output (--batch 2 --size 64):
ResNet-18, batch 2, 64x64
weights OK: 102 torch tensors -> 102 JAX leaves (nnx), 41 layers aligned (20 dropped)
float64 eval : agrees True, 58 layers, 62 parameters
  max abs error: outputs 9e-14, activation grads 9e-16, param grads 6e-14
float64 train: agrees True, 58 layers, 102 parameters
  max abs error: outputs 1e-13, activation grads 4e-14, param grads 4e-13, running stats 5e-15
float32 eval : agrees True, 58 layers, 62 parameters
  max abs error: outputs 3e-05, activation grads 4e-07, param grads 2e-05
float32 train: agrees True, 58 layers, 102 parameters
  max abs error: outputs 6e-05, activation grads 1e-05, param grads 1e-04, running stats 1e-06
planted bug, padding='SAME' in layer2.0.conv1: agrees False
  first divergence: layer2.0.conv1
  layer2.0.conv1: strided-same-padding
    torch: padding=(1, 1) (symmetric), stride=(2, 2)
    JAX:   padding='SAME' (asymmetric when strided)
    fix:   padding=((1, 1), (1, 1))
"""

from __future__ import annotations

import argparse
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import funcdiff
from funcdiff.parity import compare_model, load_torch_weights

# ---- the PyTorch original (torchvision's BasicBlock ResNet) ---------------------------------


class TorchBasicBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TorchResNet18(torch.nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths, cin = (64, 128, 256, 512), 64
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [TorchBasicBlock(cin, cout, stride), TorchBasicBlock(cout, cout)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---- the Flax NNX port ----------------------------------------------------------------------


class BatchNorm2d(nnx.BatchNorm):
    """``nnx.BatchNorm`` with torch's conventions, for NHWC inputs.

    momentum 0.1 in torch's sense (``momentum=0.9`` here), epsilon 1e-5, running statistics
    stored in ``dtype`` (flax stores them in float32 whatever the inputs), normalisation with
    the biased batch variance and the running variance updated with the unbiased one
    (``n / (n - 1)``), as ``torch.nn.BatchNorm2d`` does.
    """

    def __init__(self, num_features: int, *, dtype: jnp.dtype, rngs: nnx.Rngs) -> None:
        super().__init__(
            num_features,
            momentum=0.9,
            epsilon=1e-5,
            dtype=dtype,
            param_dtype=dtype,
            use_fast_variance=False,
            rngs=rngs,
        )
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), dtype))

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:  # type: ignore[override]
        use_running = (
            self.use_running_average if use_running_average is None else use_running_average
        )
        axes = tuple(range(x.ndim - 1))
        if use_running:
            mean, var = self.mean[...], self.var[...]
        else:
            n = int(np.prod([x.shape[a] for a in axes]))
            mean = x.mean(axes)
            var = jnp.mean(jnp.square(x - mean), axes)  # biased: what torch normalises with
            m = self.momentum
            unbiased = jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
            self.mean[...] = m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)
            self.var[...] = m * self.var[...] + (1 - m) * unbiased
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return y * self.scale[...] + self.bias[...]


def conv(cin: int, cout: int, k: int, stride: int, pad: int, dtype: jnp.dtype, rngs: nnx.Rngs):
    """``nn.Conv2d(cin, cout, k, stride, padding=pad, bias=False)`` in NNX (symmetric padding)."""
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        param_dtype=dtype,
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, stride: int, *, dtype, rngs: nnx.Rngs) -> None:
        self.conv1 = conv(cin, cout, 3, stride, 1, dtype, rngs)
        self.bn1 = BatchNorm2d(cout, dtype=dtype, rngs=rngs)
        self.conv2 = conv(cout, cout, 3, 1, 1, dtype, rngs)
        self.bn2 = BatchNorm2d(cout, dtype=dtype, rngs=rngs)
        self.downsample: nnx.Sequential | None = nnx.data(None)
        if stride != 1 or cin != cout:
            self.downsample = nnx.Sequential(
                conv(cin, cout, 1, stride, 0, dtype, rngs),
                BatchNorm2d(cout, dtype=dtype, rngs=rngs),
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        identity = x if self.downsample is None else self.downsample(x)
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nnx.relu(out + identity)


class ResNet18(nnx.Module):
    """The NNX port; takes torch's NCHW input and returns the logits."""

    def __init__(self, num_classes: int = 10, *, dtype=jnp.float32, rngs: nnx.Rngs) -> None:
        self.conv1 = conv(3, 64, 7, 2, 3, dtype, rngs)
        self.bn1 = BatchNorm2d(64, dtype=dtype, rngs=rngs)
        widths, cin = (64, 128, 256, 512), 64
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [
                BasicBlock(cin, cout, stride, dtype=dtype, rngs=rngs),
                BasicBlock(cout, cout, 1, dtype=dtype, rngs=rngs),
            ]
            setattr(self, f"layer{i + 1}", nnx.Sequential(*blocks))
            cin = cout
        self.fc = nnx.Linear(512, num_classes, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.transpose(x, (0, 2, 3, 1))  # NCHW (torch) -> NHWC (flax)
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(axis=(1, 2)))


# ---- building both, and the comparison ------------------------------------------------------


def make_models(dtype: str = "float32", seed: int = 0) -> tuple[TorchResNet18, ResNet18]:
    """The torch model (torchvision's init, BatchNorm randomised) and an NNX port with its own
    random weights.

    float64 models must be built inside ``funcdiff.scoped(x64=True)``.
    """
    torch.manual_seed(seed)
    torch_model = TorchResNet18()
    with torch.no_grad():  # as if trained: BatchNorm at its init is close to the identity
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    torch_model = torch_model.to(getattr(torch, dtype))
    jax_model = ResNet18(dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed))
    return torch_model, jax_model


def make_input(batch: int, size: int, dtype: str = "float32", seed: int = 0) -> np.ndarray:
    """A batch of NCHW images, the same array for both frameworks."""
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(dtype)


#: float32 tolerances for ResNet-18 (float64 uses compare_model's defaults, rtol 1e-9, atol
#: 1e-12). float32 rounding compounds with depth: at batch 2-4, 64x64 the worst forward error
#: is 2.5e-5 (layer4) and the worst gradient error 1.4e-4 (conv1.weight in train mode, a sum
#: over every position through the batch statistics), 0.016 and 0.11 of these tolerances.
FLOAT32_TOL = {"rtol": 1e-3, "atol": 1e-3}


def compare(dtype: str, train: bool, batch: int, size: int, *, isolate: bool = False):
    """``(WeightMapping, ModelParityResult)`` of a fresh torch model and its NNX port."""
    with funcdiff.scoped(x64=dtype == "float64"):
        torch_model, jax_model = make_models(dtype)
        mapping = load_torch_weights(jax_model, torch_model)
    x = make_input(batch, size, dtype)
    tol = FLOAT32_TOL if dtype == "float32" else {}
    result = compare_model(jax_model, torch_model, x, train=train, isolate=isolate, **tol)
    return mapping, result


def print_bug(label: str, bad) -> None:
    """The verdict on a planted bug, and the convention check's first finding."""
    print(f"planted bug, {label}: agrees {bad.ok}")
    print(f"  first divergence: {bad.first_divergence}")
    for f in bad.diagnosis[:1]:
        print(textwrap.indent(str(f), "  "))


def planted_bug(batch: int, size: int):
    """The port with flax's ``'SAME'`` padding in layer2.0.conv1 (3x3, stride 2)."""
    torch_model, jax_model = make_models("float32")
    load_torch_weights(jax_model, torch_model)
    jax_model.layer2.layers[0].conv1.padding = "SAME"
    return compare_model(jax_model, torch_model, make_input(batch, size), **FLOAT32_TOL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--isolate", action="store_true", help="also run each layer isolated")
    parser.add_argument("--tree", action="store_true", help="print the float32 eval tree")
    parser.add_argument(
        "--dtype", choices=("float64", "float32"), action="append", help="only this dtype"
    )
    args = parser.parse_args(argv)
    dtypes = args.dtype or ("float64", "float32")
    print(f"ResNet-18, batch {args.batch}, {args.size}x{args.size}")
    for dtype in dtypes:
        for train in (False, True):
            mapping, result = compare(dtype, train, args.batch, args.size, isolate=args.isolate)
            if dtype == dtypes[0] and not train:
                print(str(mapping).splitlines()[0], f"({len(mapping.dropped)} dropped)")
            print(f"{dtype} {'train' if train else 'eval '}: {result.summary()}")
            if args.tree and dtype == "float32" and not train:
                print(result)
    bad = planted_bug(args.batch, args.size)
    print_bug("padding='SAME' in layer2.0.conv1", bad)


if __name__ == "__main__":
    main()

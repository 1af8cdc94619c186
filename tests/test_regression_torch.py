"""fit reproduces the tutorial's PyTorch SGD loop, epoch by epoch, from the same start."""

from __future__ import annotations

import numpy as np
import optax
import pytest

from funcdiff import scoped
from funcdiff.regression import fit

torch = pytest.importorskip("torch")


def _tutorial_loop(x, y, b0, b1, epochs, lr, dtype):
    """The tutorial's loop, verbatim apart from recording every epoch."""
    x_train = torch.tensor(x, dtype=dtype)
    y_train = torch.tensor(y, dtype=dtype)
    model = [
        torch.nn.Parameter(torch.tensor([b0], dtype=dtype)),
        torch.nn.Parameter(torch.tensor([b1], dtype=dtype)),
    ]
    optimizer = torch.optim.SGD(model, lr=lr)
    losses, grads = [], []
    for _ in range(epochs):
        optimizer.zero_grad()
        y_predicted = model[0] + model[1] * x_train
        loss = torch.mean((y_train - y_predicted) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        grads.append([model[0].grad.item(), model[1].grad.item()])
    return np.array(losses), np.array(grads), model[0].item(), model[1].item()


@pytest.mark.parametrize("x64", [False, True])
def test_fit_reproduces_torch_sgd_on_the_tutorial(x64):
    torch.manual_seed(0)
    n = 100
    x_train = torch.randn(n, dtype=torch.float)
    y_train = 2 + x_train + torch.randn(n, dtype=torch.float)
    b0, b1 = torch.randn(1).item(), torch.randn(1).item()
    x, y = x_train.numpy(), y_train.numpy()
    dtype = torch.float64 if x64 else torch.float32
    losses, grads, t_b0, t_b1 = _tutorial_loop(x, y, b0, b1, 500, 0.1, dtype)
    with scoped(x64=x64):
        npdt = np.float64 if x64 else np.float32
        r = fit(
            x.astype(npdt), y.astype(npdt), optimizer=optax.sgd(0.1), epochs=500,
            params={"intercept": np.asarray(b0, npdt), "coef": np.asarray(b1, npdt)},
        )  # fmt: skip
        rtol, atol = (1e-12, 1e-13) if x64 else (2e-5, 2e-6)
        np.testing.assert_allclose(r.losses, losses, rtol=rtol)
        np.testing.assert_allclose(r.params["intercept"], t_b0, rtol=rtol)
        np.testing.assert_allclose(r.params["coef"], t_b1, rtol=rtol)
        logged = grads[::100]
        np.testing.assert_allclose(r.log.grad["intercept"], logged[:, 0], rtol=rtol, atol=atol)
        np.testing.assert_allclose(r.log.grad["coef"], logged[:, 1], rtol=rtol, atol=atol)
        # A planted mismatch (one epoch fewer) is caught by the same comparison.
        short = fit(
            x.astype(npdt), y.astype(npdt), optimizer=optax.sgd(0.1), epochs=3,
            params={"intercept": np.asarray(b0, npdt), "coef": np.asarray(b1, npdt)},
        )  # fmt: skip
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(short.params["coef"], t_b1, rtol=rtol)

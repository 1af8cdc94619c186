"""The tutorial's PyTorch code, as the baselines run it (imported only with torch present)."""

from __future__ import annotations

from typing import Any


def f(x: Any) -> tuple[Any, Any]:
    """The tutorial's ``f``."""
    import torch

    return torch.log(x[0] * x[1]), torch.sin(x[1])


def g(y: Any) -> Any:
    """The tutorial's ``g``."""
    return y[0] * y[1]


def lse_tanh(a: Any) -> Any:
    """``x -> logsumexp(tanh(a @ x))``, the gradcheck case's function (issue 4's benchmark)."""
    import torch

    def fn(x: Any) -> Any:
        return torch.logsumexp(torch.tanh(a @ x), 0)

    return fn


def tutorial_fit(x: Any, y: Any, b0: Any, b1: Any, epochs: int, lr: float = 0.1) -> Any:
    """The tutorial's training loop: ``Parameter``s, ``optim.SGD``, ``backward()`` per epoch.

    Without the tutorial's prints (they would time the terminal).
    """
    import torch

    model = [torch.nn.Parameter(b0.clone()), torch.nn.Parameter(b1.clone())]
    optimizer = torch.optim.SGD(model, lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        y_predicted = model[0] + model[1] * x
        loss = torch.mean((y - y_predicted) ** 2)
        loss.backward()
        optimizer.step()
    return model[1].detach()


def compiled_fit(step: Any, x: Any, y: Any, b0: Any, b1: Any, epochs: int) -> Any:
    """The same loop, with the step (forward, backward, update) under ``torch.compile``."""
    import torch

    model = [torch.nn.Parameter(b0.clone()), torch.nn.Parameter(b1.clone())]
    for _ in range(epochs):
        step(model, x, y)
    return model[1].detach()


def make_compiled_step(lr: float = 0.1) -> Any:
    """A ``torch.compile``-d epoch: zero the grads, forward, ``backward()``, SGD update."""
    import torch

    def step(model: list[Any], x: Any, y: Any) -> None:
        for p in model:
            p.grad = None
        loss = torch.mean((y - (model[0] + model[1] * x)) ** 2)
        loss.backward()
        with torch.no_grad():
            for p in model:
                p.sub_(lr * p.grad)

    return torch.compile(step, dynamic=False)


def mse_params(params: tuple[Any, Any], x: Any, y: Any) -> Any:
    """The tutorial's loss as a pure function of ``(b0, b1)`` (for ``torch.func``)."""
    import torch

    b0, b1 = params
    return torch.mean((y - (b0 + b1 * x)) ** 2)


def func_fit(x: Any, y: Any, b0: Any, b1: Any, epochs: int, lr: float = 0.1) -> Any:
    """The loop with ``torch.func.grad`` and a functional SGD update (no ``Parameter``s)."""
    import torch

    grad = torch.func.grad(mse_params)
    params = (b0.clone(), b1.clone())
    for _ in range(epochs):
        g0, g1 = grad(params, x, y)
        params = (params[0] - lr * g0, params[1] - lr * g1)
    return params[1]

"""compare_training: right ports pass; planted training bugs are caught at their step and part."""

from __future__ import annotations

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcdiff import parity
from funcdiff._config import scoped

torch = pytest.importorskip("torch")

# ----------------------------------------------------------------------------- tiny models


def make_mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(
        dtype
    )


def mlp_apply(p, x):
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"])
    return h @ p["2.weight"].T + p["2.bias"]


def make_bn(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    ).to(dtype)


def bn_apply(momentum=0.1):
    """A port of make_bn; ``momentum`` planted wrong (0.9: flax's convention) for one test."""

    def apply(p, x, train=True):
        h = x @ p["0.weight"].T + p["0.bias"]
        rm, rv = p["1.running_mean"], p["1.running_var"]
        if train:
            mean, var = h.mean(0), h.var(0)
            n = h.shape[0]
            new = {
                "1.running_mean": (1 - momentum) * rm + momentum * mean,
                "1.running_var": (1 - momentum) * rv + momentum * var * n / (n - 1),
            }
        else:
            mean, var, new = rm, rv, {}
        h = (h - mean) / jnp.sqrt(var + 1e-5) * p["1.weight"] + p["1.bias"]
        out = jnp.tanh(h) @ p["3.weight"].T + p["3.bias"]
        return out, {**p, **new}

    return apply


def params_of(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items() if "num_batches" not in k}


def batches(n, batch=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(batch, 3)).astype(dtype), rng.normal(size=(batch, 2)).astype(dtype))
        for _ in range(n)
    ]


def twin_optimizer(net, make):
    """The same optimizer class over a copy of ``net`` (to build a deliberately wrong tx)."""
    return make(copy.deepcopy(net))


def sgd(net, momentum=0.9, **kw):
    return torch.optim.SGD(net.parameters(), lr=0.1, momentum=momentum, foreach=False, **kw)


# ----------------------------------------------------------------------------- right runs


def test_float64_mlp_agrees_at_every_step_for_200_steps_and_compiles_once():
    net = make_mlp()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2, foreach=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200)
    res = parity.compare_training(
        (mlp_apply, params_of(net)),
        None,
        net,
        opt,
        batches(200),
        loss="mse",
        scheduler=sched,
        clip_grad_norm=0.5,
    )
    res.assert_ok()
    assert len(res.steps) == 200 and all(s.passed for s in res.steps)
    assert res.compiles == 1
    assert max(s.param_error for s in res.steps) < 1e-13
    # the lr column is torch's scheduler and the optax schedule, equal at every step
    assert res.steps[100].lr == pytest.approx(1e-2 * (1 + np.cos(np.pi * 100 / 200)) / 2)
    assert all(abs(s.lr - s.lr_jax) < 1e-15 for s in res.steps)
    # clipping was active: the first loss gradients are larger than 0.5
    assert res.drift.growth_per_step is not None and res.drift.growth_per_step < 1.05


@pytest.mark.parametrize(
    ("dtype", "teacher_forcing"),
    [(torch.float64, False), (torch.float64, True), (torch.float32, False)],
)
def test_batchnorm_sgd_steplr_port_passes(dtype, teacher_forcing):
    net = make_bn(dtype)
    opt = sgd(net, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    res = parity.compare_training(
        (bn_apply(), params_of(net)),
        None,
        net,
        opt,
        batches(8, dtype=np.float32 if dtype == torch.float32 else np.float64),
        loss="mse",
        scheduler=sched,
        teacher_forcing=teacher_forcing,
    )
    res.assert_ok()
    assert res.dtype == str(dtype).removeprefix("torch.")
    assert res.steps[3].lr == pytest.approx(0.05)
    assert all(s.buffer_name in ("", "1.running_mean", "1.running_var") for s in res.steps)


def test_nnx_port_loads_torch_weights_and_agrees():
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            kw = {"param_dtype": jnp.float64, "dtype": jnp.float64, "rngs": rngs}
            self.l1 = nnx.Linear(3, 4, **kw)
            self.l2 = nnx.Linear(4, 2, **kw)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    with scoped(x64=True):
        model = MLP(nnx.Rngs(0))
    kernel = np.asarray(model.l1.kernel[...]).copy()
    net = make_mlp()
    res = parity.compare_training(model, None, net, sgd(net), batches(6), loss="mse")
    res.assert_ok()
    assert res.framework == "nnx"
    np.testing.assert_array_equal(np.asarray(model.l1.kernel[...]), kernel)  # not changed


def test_user_objects_are_not_stepped():
    net = make_mlp()
    opt = sgd(net)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    parity.compare_training(
        (mlp_apply, params_of(net)), None, net, opt, batches(4), loss="mse", scheduler=sched
    )
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not opt.state and sched.last_epoch == 0 and opt.param_groups[0]["lr"] == 0.1


# ----------------------------------------------------------------------------- planted bugs


def run(net, opt, tx, *, apply=mlp_apply, n=6, loss="mse", **kw):
    return parity.compare_training(
        (apply, params_of(net)), tx, net, opt, batches(n), loss=loss, **kw
    )


def expect(res, step, quantity, part, name=None):
    assert not res.ok
    assert res.first_divergent_step == step, str(res)
    assert res.first_divergent_quantity == quantity, str(res)
    assert res.first_divergent_part == part
    assert res.first_divergence[:3] == (step, part, quantity)
    if name is not None:
        assert res.first_divergent_parameter is not None
        assert res.first_divergent_parameter.startswith(name), str(res)
    with pytest.raises(AssertionError, match=f"FAILED from step {step}"):
        res.assert_ok()


@pytest.mark.parametrize("teacher_forcing", [False, True])
def test_momentum_099_vs_09_fails_at_step_2_in_the_update(teacher_forcing):
    # step 1 agrees: torch's momentum buffer starts as the gradient itself
    net = make_mlp()
    tx = parity.optax_like(twin_optimizer(net, lambda m: sgd(m, momentum=0.99)))
    res = run(net, sgd(net), tx, teacher_forcing=teacher_forcing)
    expect(res, 2, "update", "optimizer")
    s = res.steps[1]
    assert s.loss_error < 1e-15 and s.grad_error < 1e-15  # forward and gradient fine


def test_weight_decay_on_biases_in_one_framework_only_names_a_bias():
    net = make_mlp()

    def grouped(m, bias_decay):
        ws = [p for n, p in m.named_parameters() if n.endswith("weight")]
        bs = [p for n, p in m.named_parameters() if n.endswith("bias")]
        return torch.optim.SGD(
            [{"params": ws}, {"params": bs, "weight_decay": bias_decay}],
            lr=0.1,
            weight_decay=0.1,
            foreach=False,
        )

    tx = parity.optax_like(twin_optimizer(net, lambda m: grouped(m, 0.1)))
    expect(run(net, grouped(net, 0.0), tx), 1, "update", "optimizer", name=("0.bias", "2.bias"))
    run(net, grouped(net, 0.0), None).assert_ok()  # the right port: optax_like of torch's


def test_scheduler_per_epoch_vs_per_batch_fails_when_the_lr_first_changes():
    net = make_mlp()
    opt = sgd(net)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)
    twin = twin_optimizer(net, sgd)
    # the port steps its schedule once per epoch of 2 batches; torch once per batch
    tx = parity.optax_like(
        twin, torch.optim.lr_scheduler.StepLR(twin, step_size=3, gamma=0.1), steps_per_epoch=2
    )
    expect(run(net, opt, tx, n=8, scheduler=sched), 4, "update", "optimizer")


def test_batchnorm_momentum_convention_fails_in_the_running_stats_at_step_1():
    net = make_bn()
    res = run(net, sgd(net), None, apply=bn_apply(momentum=0.9))
    expect(res, 1, "buffer", "forward", name="1.running_")
    assert res.steps[0].loss_error < 1e-14  # train mode: the loss uses batch statistics


def test_clipping_before_unscaling_fails_where_torch_does_not_clip():
    # Mixed-precision loss scaling: gradients of S * loss must be unscaled before clipping.
    net = make_mlp()
    scale = 1024.0
    right = optax.chain(
        parity.clip_grad_norm_like_torch(5.0), parity.optax_like(twin_optimizer(net, sgd))
    )
    wrong = optax.chain(
        optax.scale(scale),
        parity.clip_grad_norm_like_torch(5.0),  # clipped while still scaled
        optax.scale(1 / scale),
        parity.optax_like(twin_optimizer(net, sgd)),
    )
    run(net, sgd(net), right, clip_grad_norm=5.0).assert_ok()
    expect(run(net, sgd(net), wrong, clip_grad_norm=5.0), 1, "update", "optimizer")


def test_sum_vs_mean_loss_fails_in_the_forward_at_step_1():
    net = make_mlp()
    loss = (lambda o, y: jnp.sum((o - y) ** 2), torch.nn.functional.mse_loss)
    expect(run(net, sgd(net), None, loss=loss), 1, "loss", "forward")


def test_gradient_accumulated_over_two_batches_in_jax_only_fails_at_step_1():
    net = make_mlp()
    tx = optax.MultiSteps(parity.optax_like(twin_optimizer(net, sgd)), every_k_schedule=2)
    res = run(net, sgd(net), tx.gradient_transformation(), teacher_forcing=True)
    expect(res, 1, "update", "optimizer")
    assert any("MultiStepsState" in n for n in res.notes)  # not reset from torch: said so


def test_a_backward_only_bug_is_caught_in_the_gradient():
    net = make_mlp()

    def apply(p, x):  # forward identical, no gradient reaches the first bias
        h = jnp.tanh(x @ p["0.weight"].T + jax.lax.stop_gradient(p["0.bias"]))
        return h @ p["2.weight"].T + p["2.bias"]

    expect(run(net, sgd(net), None, apply=apply), 1, "gradient", "gradient", name="0.bias")


# ----------------------------------------------------------------------------- clipping


def test_clip_grad_norm_like_torch_matches_torch_and_measures_optax():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(5, 3)), rng.normal(size=4)]
    for max_norm in (0.5, 100.0):
        ts = [torch.tensor(g, requires_grad=True) for g in grads]
        for t, g in zip(ts, grads, strict=True):
            t.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_(ts, max_norm)
        with scoped(x64=True):
            tx = parity.clip_grad_norm_like_torch(max_norm)
            ours, _ = tx.update([jnp.asarray(g) for g in grads], tx.init(None))
            theirs, _ = optax.clip_by_global_norm(max_norm).update(
                [jnp.asarray(g) for g in grads], optax.EmptyState()
            )
        for o, t in zip(ours, ts, strict=True):
            np.testing.assert_allclose(np.asarray(o), t.grad.numpy(), rtol=1e-15, atol=0)
        gap = max(
            float(np.max(np.abs(np.asarray(a) - t.grad.numpy()) / np.abs(t.grad.numpy())))
            for a, t in zip(theirs, ts, strict=True)
        )
        norm = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
        if max_norm < norm:  # optax scales by max_norm / n, torch by max_norm / (n + 1e-6)
            assert gap == pytest.approx(1e-6 / norm, rel=1e-3)
        else:
            assert gap < 1e-15


# ----------------------------------------------------------------------------- the record


def test_record_str_to_dict_plot(tmp_path):
    net = make_mlp()
    tx = parity.optax_like(twin_optimizer(net, lambda m: sgd(m, momentum=0.99)))
    res = run(net, sgd(net), tx)
    text = str(res)
    assert "FAILED from step 2: update (optimizer)" in text
    assert any(line.startswith(">>") and " 2 " in line for line in text.splitlines())
    d = json.loads(json.dumps(res.to_dict()))
    assert d["ok"] is False and d["first_divergent_step"] == 2 and len(d["steps"]) == 6
    assert d["steps"][1]["failed"][0][0] == "update"
    with pytest.raises(dataclasses_frozen_error()):
        res.dtype = "x"  # type: ignore[misc]
    pytest.importorskip("matplotlib")
    path = tmp_path / "run.png"
    res.plot(str(path))
    assert path.stat().st_size > 1000


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_public_names():
    for name in (
        "compare_training",
        "TrainingParityResult",
        "TrainingStep",
        "Drift",
        "clip_grad_norm_like_torch",
    ):
        assert name in parity.__all__


# ----------------------------------------------------------------------------- bad input


def test_batches_the_models_reject_name_batches():
    net = make_mlp()
    rng = np.random.default_rng(0)
    bad = [(rng.normal(size=(8, 5)), rng.normal(size=(8, 2)))]
    with pytest.raises(ValueError, match="`batches"):
        parity.compare_training((mlp_apply, params_of(net)), None, net, sgd(net), bad, loss="mse")
    ragged = batches(3)
    ragged[1] = (ragged[1][0][:5], ragged[1][1][:5])
    with pytest.raises(ValueError, match=r"`batches\[1\]`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(net), ragged, loss="mse"
        )
    with pytest.raises(TypeError, match="`batches`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(net), [np.ones(3)], loss="mse"
        )


def test_non_scalar_loss_names_loss():
    net = make_mlp()
    loss = (lambda o, y: (o - y) ** 2, lambda o, y: (o - y) ** 2)
    with pytest.raises(ValueError, match="`loss`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(net), batches(2), loss=loss
        )
    with pytest.raises(ValueError, match="`loss`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(net), batches(2), loss="l1"
        )


def test_optimizer_of_other_parameters_names_torch_optimizer():
    net = make_mlp()
    with pytest.raises(ValueError, match=r"`torch_optimizer`.*not the module's"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(make_mlp()), batches(2), loss="mse"
        )


def test_unmappable_optimizer_names_torch_optimizer():
    net = make_mlp()
    opt = torch.optim.Adadelta(net.parameters())
    with pytest.raises(NotImplementedError, match=r"`torch_optimizer`.*Pass `tx`"):
        parity.compare_training((mlp_apply, params_of(net)), None, net, opt, batches(2), loss="mse")
    # with a tx of its own, any torch optimizer can be compared
    res = parity.compare_training(
        (mlp_apply, params_of(net)),
        optax.adadelta(1.0, rho=0.9, eps=1e-6),
        net,
        opt,
        batches(2),
        loss="mse",
    )
    assert res.steps and res.first_divergent_part in (None, "optimizer")


def test_wrong_kinds_are_type_errors():
    net = make_mlp()
    with pytest.raises(TypeError, match="`torch_module`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, "net", sgd(net), batches(1), loss="mse"
        )
    with pytest.raises(TypeError, match="`jax_model`"):
        parity.compare_training(42, None, net, sgd(net), batches(1), loss="mse")
    with pytest.raises(TypeError, match="`tx`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), "sgd", net, sgd(net), batches(1), loss="mse"
        )
    with pytest.raises(ValueError, match="`steps`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(net), batches(2), loss="mse", steps=3
        )
    for bad, error in (("x", TypeError), (2.0, TypeError), (True, TypeError), (0, ValueError)):
        with pytest.raises(error, match="`steps`"):
            parity.compare_training(
                (mlp_apply, params_of(net)), None, net, sgd(net), batches(2), loss="mse", steps=bad
            )
    with pytest.raises(TypeError, match="`rtol`"):
        parity.compare_training(
            (mlp_apply, params_of(net)), None, net, sgd(net), batches(1), loss="mse", rtol=False
        )


# ----------------------------------------------------------------------------- more paths


def test_equinox_port_agrees():
    eqx = pytest.importorskip("equinox")

    class MLP(eqx.Module):
        l1: eqx.nn.Linear
        l2: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.l1 = eqx.nn.Linear(3, 4, key=k1, dtype=jnp.float64)
            self.l2 = eqx.nn.Linear(4, 2, key=k2, dtype=jnp.float64)

        def __call__(self, x):
            return jax.vmap(lambda v: self.l2(jnp.tanh(self.l1(v))))(x)

    with scoped(x64=True):
        model = MLP(jax.random.key(0))
    net = make_mlp()
    res = parity.compare_training(model, None, net, sgd(net), batches(4), loss="mse")
    res.assert_ok()
    assert res.framework == "equinox"


def test_eval_mode_keeps_running_stats_and_agrees():
    net = make_bn()
    res = run(net, sgd(net), None, apply=bn_apply(), n=4, train=False)
    res.assert_ok()
    assert all(s.buffer_error == 0.0 for s in res.steps)


def test_injected_learning_rate_is_compared():
    net = make_mlp()
    opt = sgd(net, momentum=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)  # forgets the schedule
    res = run(net, opt, tx, n=4, scheduler=sched)
    expect(res, 3, "lr", "optimizer")
    assert res.steps[2].lr == pytest.approx(0.05) and res.steps[2].lr_jax == pytest.approx(0.1)


def test_float32_bug_is_caught_inside_the_envelope():
    net = make_mlp(torch.float32)
    tx = parity.optax_like(twin_optimizer(net, lambda m: sgd(m, momentum=0.99)))
    res = parity.compare_training(
        (mlp_apply, params_of(net)), tx, net, sgd(net), batches(4, dtype=np.float32), loss="mse"
    )
    expect(res, 2, "update", "optimizer")


def test_docstring_examples_run():
    import doctest

    from funcdiff.parity.models import _training, _training_setup

    for mod in (_training, _training_setup):
        failures, _ = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failures == 0, mod.__name__


def test_port_training_example_runs_short():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "port_training.py"
    spec = importlib.util.spec_from_file_location("port_training", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the full script (200 steps, six runs) takes ~15 s; here the CNN for six steps
    cnn = module.run_cnn(torch.float64, 6)
    assert cnn.ok, str(cnn)
    assert cnn.optimizer == "SGD + StepLR"
    assert "float64 free   6 steps: OK" in module.summary("cnn ", cnn)


def test_nnx_batchnorm_biased_running_variance_is_caught_in_the_buffer():
    # flax's BatchNorm stores the biased batch variance, torch the unbiased one (pytorch#60528)
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 4, rngs=rngs)
            self.bn = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=rngs)
            self.l2 = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.bn(self.l1(x))))

    net = make_bn(torch.float32)
    res = parity.compare_training(
        Net(nnx.Rngs(0)), None, net, sgd(net), batches(3, dtype=np.float32), loss="mse"
    )
    expect(res, 1, "buffer", "forward", name="1.running_var")
    assert "max |Δbuffer|" in str(res)
    assert res.steps[0].loss_error < 1e-6  # batch statistics: the loss agrees


@pytest.mark.parametrize("amsgrad", [False, True])
def test_teacher_forcing_resets_adam_state_of_two_param_groups(amsgrad):
    net = make_mlp()
    ws = [p for n, p in net.named_parameters() if n.endswith("weight")]
    bs = [p for n, p in net.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW(
        [{"params": ws}, {"params": bs, "weight_decay": 0.0}],
        lr=1e-2,
        weight_decay=0.1,
        amsgrad=amsgrad,
        foreach=False,
    )
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    res = run(net, opt, None, n=5, scheduler=sched, teacher_forcing=True, clip_grad_norm=0.3)
    res.assert_ok()
    assert res.notes == ()  # every optax state was written from torch's
    assert max(s.update_error for s in res.steps) < 1e-15


def test_optax_state_from_torch_writes_every_moment():
    from funcdiff.parity.models._training_setup import optax_state_from_torch

    net = make_mlp()
    ws = [p for n, p in net.named_parameters() if n.endswith("weight")]
    bs = [p for n, p in net.named_parameters() if n.endswith("bias")]
    opt = torch.optim.Adam([{"params": ws}, {"params": bs, "lr": 0.5}], lr=0.1)
    tx = parity.optax_like(opt)
    params = [p.detach().numpy() for p in ws + bs]
    state = tx.init(params)
    rng = np.random.default_rng(0)
    torch_state = [
        {"exp_avg": rng.normal(size=p.shape), "exp_avg_sq": rng.uniform(size=p.shape)}
        for p in params
    ]
    new, notes = optax_state_from_torch(state, torch_state, 7)
    assert notes == []
    found = {"mu": 0, "nu": 0, "count": 0}

    def visit(node):
        if isinstance(node, optax.ScaleByAdamState):
            assert int(node.count) == 7
            found["count"] += 1
            for i, (m, v) in enumerate(zip(node.mu, node.nu, strict=True)):
                if isinstance(m, optax.MaskedNode):
                    continue
                want_m, want_v = torch_state[i]["exp_avg"], torch_state[i]["exp_avg_sq"]
                np.testing.assert_array_equal(m, want_m.astype(m.dtype))
                np.testing.assert_array_equal(v, want_v.astype(v.dtype))
                found["mu"] += 1
                found["nu"] += 1
        elif isinstance(node, tuple | list):
            for c in node:
                visit(c)
        elif isinstance(node, dict):
            for c in node.values():
                visit(c)

    visit(new)
    assert found == {"mu": 4, "nu": 4, "count": 2}  # two groups, four parameters


# ----------------------------------------------------------------------------- Equinox state


def _eqx_bn_net(eqx):
    class Net(eqx.Module):
        """make_bn in Equinox: eqx.nn.BatchNorm(mode="batch") with its state.

        ``momentum`` is Equinox's (the weight of the old statistics: torch's 0.1 is 0.9);
        ``unbiased`` rescales the stored variance the way torch does (Equinox, like flax,
        stores the biased batch variance).
        """

        l1: eqx.nn.Linear
        bn: eqx.nn.BatchNorm
        l2: eqx.nn.Linear
        unbiased: bool = eqx.field(static=True)

        def __init__(self, momentum=0.9, unbiased=True):
            k1, k2 = jax.random.split(jax.random.key(0))
            self.l1 = eqx.nn.Linear(3, 4, key=k1, dtype=jnp.float64)
            self.bn = eqx.nn.BatchNorm(
                4, "batch", momentum=momentum, eps=1e-5, mode="batch", dtype=jnp.float64
            )
            self.l2 = eqx.nn.Linear(4, 2, key=k2, dtype=jnp.float64)
            self.unbiased = unbiased

        def __call__(self, x, state):
            idx = self.bn.batch_state_index
            _, v0 = state.get(idx)
            h = jax.vmap(self.l1)(x)
            bn = jax.vmap(self.bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
            h, state = bn(h, state)
            if self.unbiased and not self.bn.inference:
                # v1 = m v0 + (1 - m) var  ->  m v0 + (1 - m) var n / (n - 1)
                m1, v1 = state.get(idx)
                state = state.set(idx, (m1, v1 + (v1 - self.bn.momentum * v0) / (x.shape[0] - 1)))
            return jax.vmap(lambda v: self.l2(jnp.tanh(v)))(h), state

    return Net


def _eqx_bn_pair(**kw):
    eqx = pytest.importorskip("equinox")
    with scoped(x64=True):
        return eqx.nn.make_with_state(_eqx_bn_net(eqx))(**kw)


@pytest.mark.parametrize("train", [True, False])
def test_equinox_batchnorm_state_pair_agrees_in_float64(train):
    net = make_bn()
    pair = _eqx_bn_pair()
    res = parity.compare_training(pair, None, net, sgd(net), batches(4), loss="mse", train=train)
    res.assert_ok()
    assert res.framework == "equinox" and len(res.steps) == 4
    assert {s.buffer_name for s in res.steps} <= {"", "1.running_mean", "1.running_var"}
    assert max(s.buffer_error for s in res.steps) < 1e-14
    if not train:
        assert all(s.buffer_error == 0.0 for s in res.steps)
    # the caller's pair is untouched: the state still holds Equinox's initial statistics
    mean, var = pair[1].get(pair[0].bn.batch_state_index)
    assert np.array_equal(mean, np.zeros(4)) and np.array_equal(var, np.ones(4))


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"momentum": 0.1}, "1.running_"), ({"unbiased": False}, "1.running_var")],
)
def test_equinox_batchnorm_bugs_are_caught_in_the_running_stats_at_step_1(kw, name):
    # momentum 0.1 is torch's number in Equinox's convention (torch m == Equinox 1 - m)
    net = make_bn()
    res = parity.compare_training(_eqx_bn_pair(**kw), None, net, sgd(net), batches(3), loss="mse")
    expect(res, 1, "buffer", "forward", name=name)
    assert res.steps[0].loss_error < 1e-14  # batch statistics: the loss agrees


def test_equinox_state_built_under_x64_runs_against_float32_torch_and_teacher_forcing():
    # the float64 statistics and the int64 weak-typed batch counter of a pair made under x64
    # are rebuilt for a float32 run (eqx.nn.State.set refuses a new dtype or weak type)
    net = make_bn(torch.float32)
    data = batches(3, dtype=np.float32)
    res = parity.compare_training(_eqx_bn_pair(), None, net, sgd(net), data, loss="mse")
    res.assert_ok()
    assert res.dtype == "float32" and any("float64" in n for n in res.notes)
    net = make_bn()
    pair = _eqx_bn_pair(momentum=0.1)
    res = parity.compare_training(
        pair, None, net, sgd(net), batches(3), loss="mse", teacher_forcing=True
    )
    expect(res, 1, "buffer", "forward", name="1.running_")


def test_equinox_batchnorm_without_its_state_names_jax_model():
    pair = _eqx_bn_pair()
    net = make_bn()
    with pytest.raises(TypeError, match=r"`jax_model`.*make_with_state"):
        parity.compare_training(pair[0], None, net, sgd(net), batches(2), loss="mse")

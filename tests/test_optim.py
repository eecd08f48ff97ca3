"""alto.optim against the spec: plain reference loops, special cases, resume, validation."""
from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from alto.optim import cpu_kernel, lamb_family
from alto.optim import ALTO, E, Lamb, Lion, build, optimizer_names, param_groups, resolve
from optim_reference import PlainE, PlainLambFamily, PlainLion

torch.set_num_threads(1)
STEPS = 120
WD = 0.01


def make_params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, 4, generator=g, dtype=dtype) * 0.5, torch.randn(6, generator=g, dtype=dtype) * 0.1,
            torch.randn(3, 6, generator=g, dtype=dtype) * 0.5, torch.zeros(3, dtype=dtype)]


_gen = torch.Generator().manual_seed(1)
X = torch.randn(64, 4, generator=_gen, dtype=torch.float64)
Y = torch.randint(0, 3, (64,), generator=_gen)


def loss_fn(params, t):
    idx = torch.randperm(64, generator=torch.Generator().manual_seed(t))[:16]
    w1, b1, w2, b2 = params
    x = X[idx].to(w1.dtype)
    logits = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    # scaled so that the global gradient norm crosses the clip threshold on some steps only
    return torch.nn.functional.cross_entropy(logits, Y[idx]) * (4.0 if t % 3 else 0.5)


def two_groups(params):
    return [{"params": params[0::2], "weight_decay": WD}, {"params": params[1::2], "weight_decay": 0.0}]


def run_fast(make_opt, dtype, steps=STEPS, start=None):
    params = [p.clone().requires_grad_() for p in (start or make_params(dtype))]
    opt = make_opt(two_groups(params))
    for t in range(steps):
        opt.zero_grad()
        loss_fn(params, t).backward()
        opt.step()
    return [p.detach() for p in params]


def run_plain(make_plain, dtype, steps=STEPS):
    params = make_params(dtype)
    opt = make_plain([(params[0::2], WD), (params[1::2], 0.0)])
    for t in range(steps):
        leaves = [p.clone().requires_grad_() for p in params]
        grads = torch.autograd.grad(loss_fn(leaves, t), leaves)
        opt.step({id(p): g for p, g in zip(params, grads)})
    return params


def assert_close(fast, plain, dtype):
    for f, p in zip(fast, plain):
        if dtype == torch.float64:
            assert (f - p).abs().max().item() <= 1e-10
        else:
            torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-6)


LAMB_FAMILY_CASES = {
    "alto-reference": (lambda g, fe: ALTO(g, lr=0.01, betas=(0.9, 0.9, 0.99), alpha=-5.0, foreach=fe),
                       lambda g: PlainLambFamily(g, lr=0.01, betas=(0.9, 0.9, 0.99), alpha=-5.0)),
    "alto-small-batch": (lambda g, fe: ALTO(g, lr=0.01, betas=(0.01, 0.9, 0.99), alpha=0.5, foreach=fe),
                         lambda g: PlainLambFamily(g, lr=0.01, betas=(0.01, 0.9, 0.99), alpha=0.5)),
    "alto-vanilla-paper-ratio": (
        lambda g, fe: ALTO(g, lr=0.01, alpha=-5.0, bias_correction=False, trust_ratio="paper", foreach=fe),
        lambda g: PlainLambFamily(g, lr=0.01, betas=(0.99, 0.9, 0.99), alpha=-5.0, bias_correction=False,
                                  trust_ratio="paper")),
    "alto-no-clip-no-ratio": (
        lambda g, fe: ALTO(g, lr=0.01, alpha=-5.0, grad_clip=None, trust_ratio="none", foreach=fe),
        lambda g: PlainLambFamily(g, lr=0.01, betas=(0.99, 0.9, 0.99), alpha=-5.0, grad_clip=None,
                                  trust_ratio="none")),
    "lamb": (lambda g, fe: Lamb(g, lr=0.01, foreach=fe),
             lambda g: PlainLambFamily(g, lr=0.01, betas=(0.9, 0.99), bias_correction=False, use_a=False)),
    "lamb-bc": (lambda g, fe: Lamb(g, lr=0.01, bias_correction=True, foreach=fe),
                lambda g: PlainLambFamily(g, lr=0.01, betas=(0.9, 0.99), bias_correction=True, use_a=False)),
}


# The CPU paths of the Lamb family: name -> (C loop on, CPU_BLOCK_ELEMS, foreach). "cpu-kernel-split"
# cuts the tensors between three threads; "cache-blocked-chunked" cuts them into 5-element blocks;
# "multi-tensor" is the CUDA layout (all tensors in one block).
PATHS = {
    "cpu-kernel": (True, lamb_family.CPU_BLOCK_ELEMS, True),
    "cpu-kernel-split": (True, lamb_family.CPU_BLOCK_ELEMS, True),
    "cache-blocked": (False, lamb_family.CPU_BLOCK_ELEMS, True),
    "cache-blocked-chunked": (False, 5, True),
    "multi-tensor": (False, None, True),
    "per-tensor": (False, lamb_family.CPU_BLOCK_ELEMS, False),
}


def use_path(path, monkeypatch):
    """Switch to one CPU path of the Lamb family; returns foreach."""
    kernel, block, foreach = PATHS[path]
    monkeypatch.setattr(lamb_family, "CPU_KERNEL", kernel)
    monkeypatch.setattr(lamb_family, "CPU_BLOCK_ELEMS", block)
    if path == "cpu-kernel-split":
        monkeypatch.setattr(cpu_kernel, "MIN_ELEMS_PER_THREAD", 1)
        monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    return foreach


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(LAMB_FAMILY_CASES))
def test_lamb_family_matches_plain_loop(case, path, dtype, monkeypatch):
    foreach = use_path(path, monkeypatch)
    make_fast, make_plain = LAMB_FAMILY_CASES[case]
    fast = run_fast(lambda g: make_fast(g, foreach), dtype)
    plain = run_plain(make_plain, dtype)
    assert not torch.equal(fast[0], make_params(dtype)[0]), "parameters must have moved"
    assert_close(fast, plain, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("foreach", [True, False])
def test_lion_matches_plain_loop(foreach, dtype):
    plain = run_plain(lambda g: PlainLion(g, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1), dtype)
    # one group: LION's decoupled decay applies to every tensor in PlainLion
    fast = run_fast(lambda g: Lion([{"params": [p for grp in g for p in grp["params"]]}], lr=1e-3,
                                   weight_decay=0.1, foreach=foreach), dtype)
    assert_close(fast, plain, dtype)


def test_lion_matches_lion_pytorch_package():
    lion_pytorch = pytest.importorskip("lion_pytorch")
    ours = run_fast(lambda g: Lion([{"params": [p for grp in g for p in grp["params"]]}], lr=1e-3,
                                   betas=(0.9, 0.99), weight_decay=0.1), torch.float64)
    theirs = run_fast(lambda g: lion_pytorch.Lion([p for grp in g for p in grp["params"]], lr=1e-3,
                                                  betas=(0.9, 0.99), weight_decay=0.1), torch.float64)
    assert_close(ours, theirs, torch.float64)


@pytest.mark.parametrize("init", ["zeros", "first_grad"])
def test_e_on_sgd_matches_plain_loop(init):
    def flat(g):
        return [p for grp in g for p in grp["params"]]
    fast = run_fast(lambda g: E(torch.optim.SGD(flat(g), lr=0.01, momentum=0.9), alpha=-5.0, beta=0.99,
                                init=init), torch.float64)
    params = make_params(torch.float64)
    plain = PlainE(params, lr=0.01, momentum=0.9, alpha=-5.0, beta=0.99, init=init)
    for t in range(STEPS):
        leaves = [p.clone().requires_grad_() for p in params]
        grads = torch.autograd.grad(loss_fn(leaves, t), leaves)
        plain.step({id(p): g for p, g in zip(params, grads)})
    assert_close(fast, params, torch.float64)


# --- special cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("foreach", [True, False])
def test_alto_with_alpha_zero_is_lamb_with_bias_correction(foreach):
    alto = run_fast(lambda g: ALTO(g, lr=0.01, betas=(0.9, 0.9, 0.99), alpha=0.0, foreach=foreach), torch.float32)
    lamb = run_fast(lambda g: Lamb(g, lr=0.01, betas=(0.9, 0.99), bias_correction=True, foreach=foreach),
                    torch.float32)
    for a, b in zip(alto, lamb):
        assert torch.equal(a, b)


@pytest.mark.parametrize("base", [
    lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True),
    lambda ps: torch.optim.Adam(ps, lr=1e-2),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: Lion(ps, lr=1e-3, weight_decay=0.1),
], ids=["sgd-nesterov", "adam", "adamw", "lion"])
def test_e_with_alpha_zero_is_bit_identical_to_base(base):
    def flat(g):
        return [p for grp in g for p in grp["params"]]
    wrapped = run_fast(lambda g: E(base(flat(g)), alpha=0.0, beta=0.99), torch.float32)
    alone = run_fast(lambda g: base(flat(g)), torch.float32)
    for a, b in zip(wrapped, alone):
        assert torch.equal(a, b)


@pytest.mark.parametrize("make", [
    lambda g: ALTO(g, lr=0.01, alpha=-5.0), lambda g: Lamb(g, lr=0.01), lambda g: Lion(g, lr=1e-3),
    lambda g: E(torch.optim.Adam(g, lr=1e-2)),
], ids=["alto", "lamb", "lion", "e-adam"])
def test_parameter_without_grad_keeps_its_state(make):
    params = [p.clone().requires_grad_() for p in make_params(torch.float64)]
    opt = make(two_groups(params))
    for t in range(3):
        opt.zero_grad()
        loss_fn(params, t).backward()
        opt.step()
    frozen = params[1]
    before = {k: v.clone() for k, v in opt.state[frozen].items()}  # E: its own a/prev
    base_before = ({k: v.clone() for k, v in opt.base.state[frozen].items()} if isinstance(opt, E) else {})
    value_before = frozen.detach().clone()
    for t in range(3, 6):
        opt.zero_grad()
        loss_fn(params, t).backward()
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen, value_before)
    for k, v in before.items():
        assert torch.equal(opt.state[frozen][k], v), k
    for k, v in base_before.items():
        assert torch.equal(opt.base.state[frozen][k], v), k


@pytest.mark.parametrize("cls", [ALTO, Lamb])
def test_global_clip_uses_the_norm_over_all_groups(cls):
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    extra = {"alpha": 0.0} if cls is ALTO else {}  # so that m sees the clipped g itself
    opt = cls([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=0.0, **extra)
    beta2 = opt.param_groups[0]["betas"][-2]

    def first_moment_after_one_step(ga, gb):
        # m = (1 - beta2) * clipped g after one step from zero state: the clipped gradient, seen
        opt.state.clear()
        a.grad, b.grad = torch.full((3,), ga, dtype=torch.float64), torch.full((4,), gb, dtype=torch.float64)
        opt.step()
        return [opt.state[p]["exp_avg"] / (1 - beta2) for p in (a, b)]

    # each group's norm is below 1 (0.87 and 0.8), together they are 1.18: both must be scaled
    total = math.sqrt(3 * 0.25 + 4 * 0.16)
    c = 1.0 / (total + 1e-6)
    ma, mb = first_moment_after_one_step(0.5, 0.4)
    torch.testing.assert_close(ma, torch.full((3,), 0.5 * c, dtype=torch.float64), rtol=1e-14, atol=0)
    torch.testing.assert_close(mb, torch.full((4,), 0.4 * c, dtype=torch.float64), rtol=1e-14, atol=0)
    # below the threshold nothing is scaled
    ma, _ = first_moment_after_one_step(0.1, 0.1)
    torch.testing.assert_close(ma, torch.full((3,), 0.1, dtype=torch.float64), rtol=1e-14, atol=0)


def test_zero_norm_parameter_in_a_decay_group_uses_ratio_one():
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = Lamb([p], lr=0.1, weight_decay=0.1, grad_clip=None)
    p.grad = torch.ones(5, dtype=torch.float64)
    opt.step()
    u = 0.1 / (math.sqrt(0.01) + 1e-6)  # m / (sqrt(v) + eps) after one step, no bias correction
    torch.testing.assert_close(p.detach(), torch.full((5,), -0.1 * u, dtype=torch.float64))


# --- state_dict resume --------------------------------------------------------------------------

RESUMABLE = {
    "alto": lambda g: ALTO(g, lr=0.01, alpha=-5.0),
    "lamb": lambda g: Lamb(g, lr=0.01),
    "lion": lambda g: Lion(g, lr=1e-3, weight_decay=0.1),
    "e-sgd": lambda g: E(torch.optim.SGD(g, lr=0.01, momentum=0.9), alpha=-5.0, beta=0.99),
    "e-adamw": lambda g: E(torch.optim.AdamW(g, lr=1e-2), alpha=0.5, beta=0.01, init="first_grad"),
}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_state_dict_resume_equals_never_stopping(name):
    make = RESUMABLE[name]
    straight = run_fast(make, torch.float64, steps=60)

    params = [p.clone().requires_grad_() for p in make_params(torch.float64)]
    opt = make(two_groups(params))
    for t in range(30):
        opt.zero_grad()
        loss_fn(params, t).backward()
        opt.step()
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in params], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # checkpoints must load without pickled code

    resumed = [p.clone().requires_grad_() for p in saved["params"]]
    opt2 = make(two_groups(resumed))
    opt2.load_state_dict(saved["opt"])
    for t in range(30, 60):
        opt2.zero_grad()
        loss_fn(resumed, t).backward()
        opt2.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b.detach())


def test_e_state_dict_contains_its_own_state():
    params = [p.clone().requires_grad_() for p in make_params(torch.float64)]
    opt = E(torch.optim.SGD(params, lr=0.1), alpha=-5.0, beta=0.99)
    loss_fn(params, 0).backward()
    opt.step()
    sd = opt.state_dict()
    assert set(sd["adaptor"]["state"][0]) == {"a", "prev"}
    assert sd["adaptor"]["alpha"] == -5.0


def test_e_works_with_lr_schedulers():
    params = [p.clone().requires_grad_() for p in make_params(torch.float64)]
    opt = E(torch.optim.SGD(params, lr=0.1, momentum=0.9))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for t in range(4):
        opt.zero_grad()
        loss_fn(params, t).backward()
        opt.step()
        sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(0.025)
    assert sched.get_last_lr() == [pytest.approx(0.025)]


# --- validation ---------------------------------------------------------------------------------

def _p():
    return [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize("make, words", [
    (lambda: ALTO(_p(), lr=-1.0), "lr"),
    (lambda: ALTO(_p(), lr=float("nan")), "lr"),
    (lambda: ALTO(_p(), betas=(1.0, 0.9, 0.99)), "betas[0]"),
    (lambda: ALTO(_p(), betas=(0.9, -0.1, 0.99)), "betas[1]"),
    (lambda: ALTO(_p(), betas=(0.9, 0.9, 1.5)), "betas[2]"),
    (lambda: ALTO(_p(), betas=(0.9, 0.9)), "betas"),
    (lambda: ALTO(_p(), eps=-1e-8), "eps"),
    (lambda: ALTO(_p(), weight_decay=float("inf")), "weight_decay"),
    (lambda: ALTO(_p(), betas=(0.9, 0.9, 0.99), alpha=-10.5), "alpha"),     # bound is 10
    (lambda: ALTO(_p(), betas=(0.1, 0.9, 0.99), alpha=-5.0), "alpha"),      # the reference's defaults
    (lambda: ALTO(_p(), grad_clip=0.0), "grad_clip"),
    (lambda: ALTO(_p(), trust_ratio="always"), "trust_ratio"),
    (lambda: Lamb(_p(), lr=-0.1), "lr"),
    (lambda: Lamb(_p(), betas=(0.9, 1.0)), "betas[1]"),
    (lambda: Lamb(_p(), eps=float("nan")), "eps"),
    (lambda: Lion(_p(), lr=-1e-4), "lr"),
    (lambda: Lion(_p(), betas=(1.2, 0.99)), "betas[0]"),
    (lambda: Lion(_p(), weight_decay=-1.0), "weight_decay"),
    (lambda: E(torch.optim.SGD(_p(), lr=0.1), alpha=-100.0, beta=0.99), "alpha"),
    (lambda: E(torch.optim.SGD(_p(), lr=0.1), beta=1.0), "beta"),
    (lambda: E(torch.optim.SGD(_p(), lr=0.1), alpha=float("nan")), "alpha"),
    (lambda: E(torch.optim.SGD(_p(), lr=0.1), init="last"), "init"),
    (lambda: build("adam", _p()), "optimizer"),
    (lambda: build("alto", _p(), batch_size=0), "batch_size"),
    (lambda: build("alto", _p(), momentum=0.9), "momentum"),
])
def test_invalid_hyper_parameters_raise_value_error_naming_them(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert words in str(err.value)


def test_stability_bound_message_gives_the_bound_and_the_override():
    with pytest.raises(ValueError, match=r"1/\(1 - betas\[0\]\) = 10.*allow_unstable"):
        ALTO(_p(), betas=(0.9, 0.9, 0.99), alpha=-10.5)
    ALTO(_p(), betas=(0.9, 0.9, 0.99), alpha=-10.5, allow_unstable=True)  # explicit override works


# --- grouping rule and registry ------------------------------------------------------------------

def _model():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2, bias=False))


def test_param_groups_exclude_norm_layers_and_biases():
    groups = param_groups(_model(), 1e-4)
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert groups[0]["names"] == ["0.weight", "3.weight", "5.weight"]
    assert groups[1]["names"] == ["0.bias", "1.weight", "1.bias", "3.bias", "4.weight", "4.bias"]


@pytest.mark.parametrize("name", optimizer_names())
def test_every_registry_optimizer_builds_steps_and_uses_the_same_groups(name):
    model = _model()
    opt = build(name, model, batch_size=256)
    assert [len(g["params"]) for g in opt.param_groups] == [3, 6]
    assert opt.param_groups[1]["weight_decay"] == 0.0
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_registry_switches_paper_defaults_at_batch_1024():
    small, large = resolve("alto", 1023), resolve("alto", 1024)
    assert (small["alpha"], small["betas"][0]) == (0.5, 0.01)
    assert (large["alpha"], large["betas"][0]) == (-5.0, 0.99)
    assert resolve("e_sgd", 128)["alpha"] == 0.5 and resolve("e_sgd", 4096)["beta"] == 0.99
    assert resolve("lamb")["bias_correction"] is False and resolve("lamb_bc")["bias_correction"] is True
    opt = build("alto", _model(), batch_size=4096, lr=0.02, alpha=-2.0)
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[0]["alpha"] == -2.0


def test_telemetry_statistics_are_device_tensors_and_consistent():
    model = _model()
    opt = build("alto", model, batch_size=4096)
    opt.collect_stats = True
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    s = opt.stats
    for key in ("grad_norm", "clip_coef", "update_norm", "param_norm", "trust_ratio_min", "trust_ratio_mean",
                "trust_ratio_max", "a_norm", "grad_diff_norm", "cos_grad_prev", "cos_a_grad", "alpha_a_share"):
        assert torch.is_tensor(s[key]) and s[key].ndim == 0, key
    assert s["trust_ratios"].numel() == 3  # one per decayed tensor
    assert -1.0 <= s["cos_grad_prev"].item() <= 1.0
    assert s["alpha_a_share"].item() == pytest.approx(5.0 * s["a_norm"].item() / min(1.0, s["grad_norm"].item())
                                                      if s["grad_norm"].item() > 1 else
                                                      5.0 * s["a_norm"].item() / s["grad_norm"].item(), rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["alto", "lamb", "lamb_bc", "lion", "e_adamw"])
def test_no_host_sync_inside_step_on_cuda(name):
    model = _model().cuda()
    opt = build(name, model, batch_size=4096)
    opt.collect_stats = True
    model(torch.randn(8, 4, device="cuda")).pow(2).mean().backward()
    opt.step()  # state initialisation may allocate; check the steady state
    model(torch.randn(8, 4, device="cuda")).pow(2).mean().backward()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- the faster paths compute the same numbers and statistics ------------------------------------

def _stats_trajectory(make, path, monkeypatch, steps=6, dtype=torch.float64):
    """Steps of `make` on the two-group model, with per step: the statistics and the values needed
    to recompute them by hand."""
    foreach = use_path(path, monkeypatch)
    params = [p.clone().requires_grad_() for p in make_params(dtype)]
    opt = make(two_groups(params), foreach)
    opt.collect_stats = True
    record = []
    for t in range(steps):
        opt.zero_grad()
        loss_fn(params, t).backward()
        before = {"p": [p.detach().clone() for p in params], "g": [p.grad.clone() for p in params],
                  "prev": [opt.state[p]["prev"].clone() if "prev" in opt.state[p] else torch.zeros_like(p)
                           for p in params]}
        opt.step()
        after = {"p": [p.detach().clone() for p in params],
                 "a": [opt.state[p]["a"].clone() for p in params] if "a" in opt.state[params[0]] else None}
        record.append((dict(opt.stats), before, after))
    return record


def _norm(tensors):
    return math.sqrt(sum(float(torch.sum(t * t)) for t in tensors))


def _dot(xs, ys):
    return sum(float(torch.sum(x * y)) for x, y in zip(xs, ys))


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_reports_the_statistics_with_their_meaning(path, monkeypatch):
    """Each statistic, recomputed by hand from the gradients and the states before and after a step."""
    alpha, lr = -5.0, 0.01
    make = lambda g, fe: ALTO(g, lr=lr, betas=(0.9, 0.9, 0.99), alpha=alpha, foreach=fe)
    for stats, before, after in _stats_trajectory(make, path, monkeypatch):
        n = _norm(before["g"])
        c = min(1.0, 1.0 / (n + 1e-6))
        g = [c * x for x in before["g"]]
        want = {"grad_norm": n, "clip_coef": c, "param_norm": _norm(after["p"]),
                "update_norm": _norm([q - p for p, q in zip(before["p"], after["p"])]),
                "a_norm": _norm(after["a"]), "grad_diff_norm": _norm([x - y for x, y in zip(g, before["prev"])]),
                "alpha_a_share": abs(alpha) * _norm(after["a"]) / _norm(g),
                "cos_a_grad": _dot(after["a"], g) / (_norm(after["a"]) * _norm(g))}
        if _norm(before["prev"]) > 0:
            want["cos_grad_prev"] = _dot(g, before["prev"]) / (_norm(g) * _norm(before["prev"]))
        else:
            assert math.isnan(stats["cos_grad_prev"].item())  # first step: undefined, reported as NaN
        for key, value in want.items():
            assert stats[key].item() == pytest.approx(value, rel=1e-9, abs=1e-12), key
        # the reference trust ratio: each decayed tensor moves by exactly lr * |p| (both norms > 0)
        decayed = [0, 2]
        ratios = stats["trust_ratios"]
        assert ratios.numel() == len(decayed)
        assert (stats["trust_ratio_min"].item(), stats["trust_ratio_max"].item()) == (ratios.min().item(),
                                                                                      ratios.max().item())
        assert stats["trust_ratio_mean"].item() == pytest.approx(ratios.mean().item(), rel=1e-12)
        for i in decayed:
            moved = _norm([after["p"][i] - before["p"][i]])
            assert moved == pytest.approx(lr * _norm([before["p"][i]]), rel=1e-9)


def test_statistics_agree_across_paths(monkeypatch):
    make = lambda g, fe: ALTO(g, lr=0.01, betas=(0.9, 0.9, 0.99), alpha=-5.0, foreach=fe)
    runs = {path: [s for s, _, _ in _stats_trajectory(make, path, monkeypatch)] for path in PATHS}
    reference = runs.pop("per-tensor")
    for path, stats in runs.items():
        for got, want in zip(stats, reference):
            assert got.keys() == want.keys(), path
            for key in want:
                torch.testing.assert_close(got[key].double(), want[key].double(), rtol=1e-9, atol=1e-12,
                                           equal_nan=True, msg=lambda m, key=key, path=path: f"{path} {key}: {m}")


def test_cpu_kernel_statistics_in_float32(monkeypatch):
    """The C loop's float32 statistics (summed in float over runs of 1024, then in double) agree
    with the torch path's to float32 rounding."""
    make = lambda g, fe: ALTO(g, lr=0.01, betas=(0.9, 0.9, 0.99), alpha=-5.0, foreach=fe)
    runs = {path: [s for s, _, _ in _stats_trajectory(make, path, monkeypatch, dtype=torch.float32)]
            for path in ("cpu-kernel", "cache-blocked")}
    for got, want in zip(runs["cpu-kernel"], runs["cache-blocked"]):
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=2e-5, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("path", ["cache-blocked", "cpu-kernel-split"])
def test_cpu_paths_handle_every_layout(path, monkeypatch):
    """Dense non-contiguous parameters (channels_last), state in another layout than its parameter
    (after loading a checkpoint), empty tensors and tensors of many chunks (or cut between
    threads): same numbers as the multi-tensor path, in float64."""
    def run(path, block):
        use_path(path, monkeypatch)
        monkeypatch.setattr(lamb_family, "CPU_BLOCK_ELEMS", block)
        gen = torch.Generator().manual_seed(0)
        conv = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64).to(memory_format=torch.channels_last)
        params = [conv.requires_grad_(), torch.randn(0, dtype=torch.float64).requires_grad_(),
                  torch.randn(50, 7, generator=gen, dtype=torch.float64).requires_grad_(),
                  torch.randn(9, generator=gen, dtype=torch.float64).requires_grad_()]
        opt = ALTO([{"params": params[:3]}, {"params": params[3:], "weight_decay": 0.0}], lr=0.01)
        for t in range(5):
            g = torch.Generator().manual_seed(t)
            for p in params:  # gradients in their parameter's layout, as autograd makes them
                p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 3)
            opt.step()
            if t == 1:  # state of the 50x7 matrix now stored transposed: another layout than its parameter
                state = opt.state[params[2]]
                for key in ("exp_avg", "a"):
                    state[key] = state[key].t().contiguous().t()
        return params

    blocked = run(path, 16)   # cache-blocked: the 50x7 matrix is 22 chunks
    reference = run("multi-tensor", None)
    assert blocked[0].is_contiguous(memory_format=torch.channels_last) and not blocked[0].is_contiguous()
    for a, b in zip(blocked, reference):
        assert torch.equal(a, b) if a.numel() == 0 else (a - b).abs().max().item() <= 1e-12


def test_step_counters_count_per_parameter_and_survive_a_state_dict():
    params = [p.clone().requires_grad_() for p in make_params(torch.float64)]
    opt = ALTO(two_groups(params), lr=0.01)
    for t in range(5):
        opt.zero_grad()
        loss_fn(params, t).backward()
        if t in (1, 3):
            params[1].grad = None  # no gradient: its counter must not move
        opt.step()
    assert [opt.state[p]["step"].item() for p in params] == [5.0, 3.0, 5.0, 5.0]
    saved = copy.deepcopy(opt.state_dict())
    again = ALTO(two_groups(params), lr=0.01)
    again.load_state_dict(saved)
    opt.zero_grad()
    loss_fn(params, 5).backward()
    again.step()
    assert [again.state[p]["step"].item() for p in params] == [6.0, 4.0, 6.0, 6.0]
    # the saved dict is not stepped along (its parameters are indexed group by group)
    assert [saved["state"][i]["step"].item() for i in range(4)] == [5.0, 5.0, 3.0, 5.0]


def test_previous_implementation_row_computes_the_same_step():
    """The benchmark's `*_previous` rows time the replaced implementation: same numbers, old speed."""
    from alto.optim.bench_previous import PreviousLambFamily

    for with_adaptor, make in ((True, lambda ps: ALTO(ps)), (False, lambda ps: Lamb(ps))):
        runs = []
        for construct in (make, lambda ps: PreviousLambFamily(ps, with_adaptor)):
            params = [p.clone().requires_grad_() for p in make_params(torch.float64)]
            opt = construct(params)
            opt.collect_stats = True
            for t in range(20):
                opt.zero_grad()
                loss_fn(params, t).backward()
                opt.step()
            runs.append((params, opt.stats))
        for a, b in zip(runs[0][0], runs[1][0]):
            assert (a - b).abs().max().item() <= 1e-10
        for key, value in runs[1][1].items():
            torch.testing.assert_close(runs[0][1][key].double(), value.double(), rtol=1e-9, atol=1e-12)


# --- CUDA paths, checked on the CPU: device tensors on the meta device --------------------------

from device_mixing import DEVICE, DeviceMixingError, NoDeviceMixing  # noqa: E402

DEVICE_PATHS = {
    "alto-multi-tensor": lambda ps: ALTO([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}], fused=False),
    "alto-paper-no-bc": lambda ps: ALTO(ps, trust_ratio="paper", bias_correction=False, fused=False),
    "alto-no-ratio-no-clip": lambda ps: ALTO(ps, trust_ratio="none", grad_clip=None, fused=False),
    "lamb-multi-tensor": lambda ps: Lamb(ps, fused=False),
    "alto-per-tensor": lambda ps: ALTO(ps, foreach=False),
    "lion": lambda ps: Lion(ps, weight_decay=0.1),
    "e-adamw": lambda ps: E(torch.optim.AdamW(ps, foreach=True)),
    "e-adamw-alpha0": lambda ps: E(torch.optim.AdamW(ps, foreach=True), alpha=0.0),
}


@pytest.mark.parametrize("stats", [False, True], ids=["plain", "telemetry"])
@pytest.mark.parametrize("name", sorted(DEVICE_PATHS))
def test_device_paths_never_mix_host_and_device_tensors(name, stats):
    """Every operation of a step on device tensors takes device tensors only (0-d host numbers
    aside), and nothing reads a device value on the host: on a GPU, the first would fail and the
    second wait for the device."""
    params = [torch.randn(s, device=DEVICE).requires_grad_() for s in [(33, 5), (7,), (0,), (128,)]]
    opt = DEVICE_PATHS[name](params)
    opt.collect_stats = stats
    with NoDeviceMixing():
        for _ in range(2):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
    if stats:
        assert opt.stats and all(v.device == DEVICE for v in opt.stats.values())


def test_the_device_stand_in_catches_mixing_and_host_reads():
    device_tensor = torch.ones(3, device=DEVICE)
    with NoDeviceMixing():
        with pytest.raises(DeviceMixingError):
            torch._foreach_add_([device_tensor], [torch.ones(3)])  # lax on CPU and meta, fails on CUDA
        with pytest.raises(DeviceMixingError):
            torch.repeat_interleave(device_tensor, torch.tensor([1, 2, 3]), output_size=6)
        device_tensor.mul_(torch.tensor(2.0))  # a 0-d host number is fine
    with pytest.raises(RuntimeError):
        device_tensor.sum().item()  # a read of a device value on the host


@pytest.mark.parametrize("path", ["cpu-kernel", "cache-blocked", "multi-tensor"])
def test_per_tensor_loop_with_statistics_handles_mixed_layouts(path, monkeypatch):
    """foreach=False with statistics on (what run.watch() turns on) takes a bucket path: that path must
    still bring a channels_last parameter and its contiguous state into one layout."""
    use_path(path, monkeypatch)

    def run(foreach, stats):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 3, 3).double()
        opt = ALTO(conv.parameters(), lr=0.01, foreach=foreach)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
        conv(x).square().sum().backward()
        opt.step()
        saved = opt.state_dict()
        conv = conv.to(memory_format=torch.channels_last)  # parameters change layout, the saved state does not
        opt = ALTO(conv.parameters(), lr=0.01, foreach=foreach)
        opt.load_state_dict(saved)
        opt.collect_stats = stats
        for _ in range(3):
            opt.zero_grad()
            conv(x.to(memory_format=torch.channels_last)).square().sum().backward()
            opt.step()
        return [p.detach() for p in conv.parameters()]

    for a, b in zip(run(False, True), run(True, False)):
        assert (a - b).abs().max().item() <= 1e-12

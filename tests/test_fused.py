"""The fused Triton path against the multi-tensor path, run on the CPU by Triton's interpreter.

The interpreter is slow (milliseconds per operation per program), so the tensors are small
and the long runs are few: four 100-step comparisons cover both optimizers, both trust-ratio
rules and bias correction on/off pairwise; the other cases run a few steps.
"""
import os

os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: kernels are built interpreted

import pytest

pytest.importorskip("triton")
import torch  # noqa: E402

from alto.optim import ALTO, Lamb  # noqa: E402

fused = pytest.importorskip("alto.optim.fused")
if not fused.INTERPRETED:
    pytest.skip("alto.optim.fused was imported before TRITON_INTERPRET=1 was set",
                allow_module_level=True)

WD = 0.01
# Mixed shapes: odd sizes, a 1-element and a 0-element tensor, and one that stays exactly zero
# (zero gradients), so its trust ratio is the reference rule's 1 on every step.
SHAPES = {"vec7": (7,), "mat": (33, 5), "vec128": (128,), "one": (1,), "empty": (0,), "zero": (4, 4)}
STALE = "vec128"  # has no gradient on every fourth step: its state must stay untouched then


def make_params(dtype):
    gen = torch.Generator().manual_seed(0)
    params = {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in SHAPES.items()}
    params["zero"].zero_()
    return {k: p.requires_grad_() for k, p in params.items()}


def make_groups(params):
    """A decay group, a weight_decay = 0 group (no trust ratio under the reference rule), an empty one."""
    return [{"params": [params[k] for k in ("mat", "one", "empty", "zero")], "weight_decay": WD},
            {"params": [params["vec7"], params["vec128"]], "weight_decay": 0.0},
            {"params": []}]


def set_grads(params, t):
    gen = torch.Generator().manual_seed(1000 + t)
    scale = 4.0 if t % 3 else 0.01  # the global clip is active on some steps only
    for k, p in params.items():
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale
        p.grad = torch.zeros_like(p) if k == "zero" else g
    if t % 4 == 3:
        params[STALE].grad = None


def run(make_opt, fused_flag, dtype=torch.float32, steps=100, stats=False):
    params = make_params(dtype)
    opt = make_opt(make_groups(params), fused_flag)
    opt.collect_stats = stats
    history = []
    for t in range(steps):
        set_grads(params, t)
        opt.step()
        if stats:
            history.append({k: v.clone() for k, v in opt.stats.items()})
    return params, opt, history


def max_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    if b.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def compare(fast, ref, opt_fast, opt_ref, tol):
    """Max relative error over parameters and every state tensor; checks state steps too.

    `a`, an EMA of gradient differences, is about 100x smaller than the gradients it is computed
    from, so its rounding (e.g. torch's CPU kernels fuse a + c*d into one FMA, the interpreter
    does not) is measured against the gradient scale, max |prev|, not against |a| itself.
    """
    worst = 0.0
    for k in fast:
        p, q = fast[k].detach(), ref[k].detach()
        worst = max(worst, max_rel_error(p, q))
        s, r = opt_fast.state[fast[k]], opt_ref.state[ref[k]]
        assert s.keys() == r.keys()
        for name in s:
            if name == "step":
                assert s[name].item() == r[name].item()
            elif name == "a":
                if r["a"].numel():
                    scale = r["prev"].abs().max().clamp_min(1e-30)
                    worst = max(worst, ((s["a"] - r["a"]).abs().max() / scale).item())
            else:
                worst = max(worst, max_rel_error(s[name], r[name]))
    assert worst <= tol, worst
    return worst


MAKERS = {
    "alto": lambda tr, bc: (lambda g, f: ALTO(g, lr=0.02, trust_ratio=tr, bias_correction=bc, fused=f)),
    "lamb": lambda tr, bc: (lambda g, f: Lamb(g, lr=0.02, trust_ratio=tr, bias_correction=bc, fused=f)),
}
# Pairwise design over (optimizer, trust ratio, bias correction): every pair of values occurs.
PAIRWISE = [("alto", "reference", True), ("alto", "paper", False),
            ("lamb", "reference", False), ("lamb", "paper", True)]


@pytest.mark.parametrize("name,trust_ratio,bias_correction", PAIRWISE)
def test_fused_matches_multi_tensor_over_100_steps(name, trust_ratio, bias_correction):
    make = MAKERS[name](trust_ratio, bias_correction)
    fast, opt_fast, _ = run(make, True)
    ref, opt_ref, _ = run(make, False)
    assert not torch.equal(fast["mat"], make_params(torch.float32)["mat"]), "parameters must move"
    assert torch.count_nonzero(fast["zero"]) == 0
    err = compare(fast, ref, opt_fast, opt_ref, tol=1e-6)
    print(f"{name} {trust_ratio} bc={bias_correction}: max relative error {err:.2e}")


def test_several_blocks_per_tensor(monkeypatch):
    """Blocks of 32 elements: multi-block tensors, masked tails, per-tensor sums over blocks."""
    monkeypatch.setattr(fused, "INTERPRET_BLOCK", 32)
    make = MAKERS["alto"]("reference", True)
    fast, opt_fast, _ = run(make, True, steps=5)
    ref, opt_ref, _ = run(make, False, steps=5)
    compare(fast, ref, opt_fast, opt_ref, tol=1e-6)


def test_fused_float64_and_the_other_branches():
    """fp64 (exact division and sqrt), trust_ratio='none', beta2 < 0.5 (lerp from the end)."""
    make = lambda g, f: ALTO(g, lr=0.02, betas=(0.9, 0.3, 0.99), alpha=0.5, trust_ratio="none", fused=f)
    fast, opt_fast, _ = run(make, True, torch.float64, steps=8)
    ref, opt_ref, _ = run(make, False, torch.float64, steps=8)
    compare(fast, ref, opt_fast, opt_ref, tol=1e-13)


def test_stale_parameter_keeps_its_state():
    params = make_params(torch.float32)
    opt = ALTO(make_groups(params), lr=0.02, fused=True)
    set_grads(params, 0)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[params[STALE]].items()}
    p_before = params[STALE].detach().clone()
    set_grads(params, 3)  # step 3: the stale parameter has no gradient
    assert params[STALE].grad is None
    opt.step()
    for k, v in opt.state[params[STALE]].items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(params[STALE].detach(), p_before)


def test_state_dict_round_trip_with_fused():
    make = lambda g: ALTO(g, lr=0.02, fused=True)
    straight = make_params(torch.float32)
    opt = make(make_groups(straight))
    for t in range(6):
        set_grads(straight, t)
        opt.step()

    first = make_params(torch.float32)
    opt1 = make(make_groups(first))
    for t in range(3):
        set_grads(first, t)
        opt1.step()
    saved = opt1.state_dict()
    resumed = {k: p.detach().clone().requires_grad_() for k, p in first.items()}
    opt2 = make(make_groups(resumed))
    opt2.load_state_dict(saved)
    for t in range(3, 6):
        set_grads(resumed, t)
        opt2.step()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def test_telemetry_statistics_match():
    make = lambda g, f: ALTO(g, lr=0.02, fused=f)
    _, _, fast = run(make, True, steps=4, stats=True)
    _, _, ref = run(make, False, steps=4, stats=True)
    for got, want in zip(fast, ref):
        assert got.keys() == want.keys()
        for key in want:
            # cosines can be near zero: their error is absolute; the rest are norms and ratios
            tol = dict(rtol=0, atol=1e-6) if key.startswith("cos_") else dict(rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(got[key], want[key], **tol, equal_nan=True,
                                       msg=lambda m, key=key: f"{key}: {m}")
    # the parameter that stays zero has trust ratio 1 (reference rule); only the decay group counts
    assert fast[-1]["trust_ratios"].numel() == 4
    assert fast[-1]["trust_ratios"][3].item() == 1.0


def test_buckets_the_kernels_do_not_cover_fall_back_and_are_still_clipped():
    """A non-dense parameter sends its bucket to the multi-tensor path (clip applied there)."""
    def build(fused_flag):
        gen = torch.Generator().manual_seed(3)
        dense = torch.randn(9, generator=gen).requires_grad_()
        strided = torch.randn(6, 8, generator=gen)[:, ::2].requires_grad_()  # not dense: fallback
        return [dense, strided], ALTO([{"params": [dense]}, {"params": [strided], "lr": 0.05}],
                                      lr=0.02, fused=fused_flag)

    strided = torch.randn(6, 8)[:, ::2]
    assert not fused.can_fuse([[strided], [strided.contiguous()]])
    results = []
    for flag in (True, False):
        params, opt = build(flag)
        for t in range(3):
            gen = torch.Generator().manual_seed(t)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen) * 5.0
            opt.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results):
        assert max_rel_error(a, b) <= 1e-6


def test_can_fuse_rules():
    x = torch.randn(5, 3)
    assert fused.can_fuse([[x], [torch.randn(5, 3)]])
    assert fused.can_fuse([[x.t()], [torch.randn(5, 3).t()]])          # dense, same layout
    assert not fused.can_fuse([[x.t()], [torch.randn(3, 5)]])          # layouts differ
    assert not fused.can_fuse([[x.half()], [x.half()]])                # fp16: multi-tensor path
    assert not fused.can_fuse([[]])


def test_fused_option_is_validated(monkeypatch):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="fused"):
        ALTO([p], fused="yes")
    with pytest.raises(ValueError, match="fused"):
        Lamb([p], fused=True, foreach=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="fused=True .*TRITON_INTERPRET"):
        ALTO([p], fused=True)
    # None on CPU tensors: the multi-tensor path, whatever the interpreter setting
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    opt = ALTO([p], fused=None)
    assert not opt._use_fused([p])
    monkeypatch.setattr(fused, "lamb_fused", lambda *a, **k: pytest.fail("fused path taken"))
    p.grad = torch.randn(3)
    opt.step()


def test_auto_mode_self_test_accepts_agreeing_kernels_and_refuses_broken_ones(monkeypatch):
    from alto.optim import lamb_family

    lamb_family._SELF_TESTS.clear()
    assert lamb_family._fused_self_test(ALTO, torch.device("cpu")) is None  # interpreter: kernels agree

    def broken(*args, **kwargs):
        raise RuntimeError("PTX compilation failed")

    monkeypatch.setattr(fused, "lamb_fused", broken)
    lamb_family._SELF_TESTS.clear()
    reason = lamb_family._fused_self_test(ALTO, torch.device("cpu"))
    assert reason is not None and "PTX compilation failed" in reason
    lamb_family._SELF_TESTS.clear()

"""The fused Triton path against the multi-tensor path, run on the CPU by Triton's interpreter.

The interpreter is slow (milliseconds per operation per program), so the tensors are small
and the long runs are few: four 100-step comparisons cover both optimizers, both trust-ratio
rules and bias correction on/off pairwise; the other cases run a few steps.
"""
import os
import subprocess
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: kernels are built interpreted

import pytest

pytest.importorskip("triton")
import torch  # noqa: E402

from alto.optim import ALTO, Lamb, kernel_checks  # noqa: E402
from alto.optim._agreement import max_relative_error, relative_error  # noqa: E402

fused = pytest.importorskip("alto.optim.fused")
if not fused.INTERPRETED:
    pytest.skip("alto.optim.fused was imported before TRITON_INTERPRET=1 was set",
                allow_module_level=True)


@pytest.fixture(autouse=True)
def multi_tensor_reference(monkeypatch):
    """The reference runs take torch's operations (on the CPU the C loop would take them otherwise)."""
    from alto.optim import lamb_family
    monkeypatch.setattr(lamb_family, "CPU_KERNEL", False)


# Odd sizes: a 1-element and a 0-element tensor, and one that stays exactly zero (zero gradients),
# so its trust ratio is the reference rule's 1 on every step; the interpreter is too slow for "tall".
SHAPES = {k: s for k, s in kernel_checks.ODD.items() if k != "tall"}
STALE = kernel_checks.STALE  # has no gradient on every fourth step: its state must stay untouched then
CPU = torch.device("cpu")


def make_params(dtype):
    return kernel_checks._params(CPU, dtype, SHAPES)


make_groups, set_grads = kernel_checks._groups, kernel_checks._set_grads


def run(make_opt, fused_flag, dtype=torch.float32, steps=100, stats=False):
    return kernel_checks._trajectory(make_opt, fused_flag, CPU, dtype, steps, stats, SHAPES)


def compare(fast, ref, opt_fast, opt_ref, tol):
    """Max relative error over parameters and every state tensor (alto.optim._agreement, which
    also checks state keys and step counts)."""
    worst = max_relative_error(list(fast.values()), opt_fast, list(ref.values()), opt_ref)
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
        assert relative_error(a, b) <= 1e-6


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


# --- host-side preparation, self-test, compiler and graph safety -------------------------------

def test_auto_mode_self_test_compares_state_and_covers_an_aligned_bucket(monkeypatch):
    """The self-test must refuse kernels that get the parameters right but the state wrong, and
    kernels that are wrong only on all-aligned buckets (the vectorised path real models take)."""
    from alto.optim import lamb_family

    real = fused.lamb_fused

    def wrong_state(plan, params, grads, exp_avgs, *args, **kwargs):
        real(plan, params, grads, exp_avgs, *args, **kwargs)
        torch._foreach_mul_(exp_avgs, 1.001)

    def wrong_when_aligned(plan, params, *args, **kwargs):
        real(plan, params, *args, **kwargs)
        if plan.n_div > 1:
            torch._foreach_mul_(params, 1.001)

    for broken in (wrong_state, wrong_when_aligned):
        monkeypatch.setattr(fused, "lamb_fused", broken)
        lamb_family._SELF_TESTS.clear()
        reason = lamb_family._fused_self_test(ALTO, torch.device("cpu"))
        assert reason is not None and "disagree" in reason, broken.__name__
    monkeypatch.setattr(fused, "lamb_fused", real)
    lamb_family._SELF_TESTS.clear()
    assert lamb_family._fused_self_test(Lamb, torch.device("cpu")) is None
    lamb_family._SELF_TESTS.clear()


def test_plans_are_reused_while_tensors_stay_where_they_are_and_rebuilt_when_they_move():
    def trajectory(fused_flag):
        params = make_params(torch.float32)
        opt = ALTO(make_groups(params), lr=0.02, fused=fused_flag)
        set_grads(params, 0)
        opt.step()
        grads = {k: p.grad for k, p in params.items()}
        built = []
        for t in (1, 2, 4, 5):
            if t == 4:  # a parameter moves to new memory: only its bucket's plan is rebuilt
                params["mat"].data = params["mat"].data.clone()
            set_grads(params, t)
            for k, p in params.items():  # gradients written in place: same addresses
                grads[k].copy_(p.grad)
                p.grad = grads[k]
            before = fused.plans_built
            opt.step()
            built.append(fused.plans_built - before)
        return params, opt, built

    fast, opt_fast, built = trajectory(True)
    assert built == [0, 0, 1, 0]
    ref, opt_ref, _ = trajectory(False)
    compare(fast, ref, opt_fast, opt_ref, tol=1e-6)


def test_aligned_buckets_take_the_aligned_kernels_and_match():
    """Sizes that are multiples of 16 get plans with alignment hints (vectorised loads on a GPU)."""
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in [(64,), (16, 32), (3, 48)]]
    runs = []
    for flag in (True, False):
        params = [t.clone().requires_grad_() for t in start]
        opt = ALTO(params, lr=0.02, fused=flag)
        for t in range(3):
            g = torch.Generator().manual_seed(t)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs.append((params, opt))
    plan = fused.bucket_plan([runs[0][0], [p.grad for p in runs[0][0]]])
    assert plan.n_div == 16
    from alto.optim._agreement import max_relative_error
    assert max_relative_error(*runs[0], *runs[1]) <= 1e-6


def test_fused_step_is_left_out_of_torch_compile_graphs():
    """torch.compile must not trace into the kernels' host code (it cannot see the tensors they
    write through the address table): the compiled step runs them as they are, with equal results."""

    def trajectory(compiled):
        params = make_params(torch.float32)
        opt = ALTO(make_groups(params), lr=0.02, fused=True)
        step = torch.compile(opt.step, backend="eager") if compiled else opt.step
        for t in range(3):
            set_grads(params, t)
            step()
        return params

    before = fused.buckets_fused
    compiled = trajectory(True)
    assert fused.buckets_fused > before
    eager = trajectory(False)
    for k in eager:
        assert torch.equal(compiled[k], eager[k]), k


def test_graph_capture_is_refused_with_a_clear_error(monkeypatch):
    from alto.optim._lamb_math import refuse_cuda_graph_capture

    refuse_cuda_graph_capture("step()", torch.device("cpu"))  # not CUDA: nothing to refuse
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    refuse_cuda_graph_capture("step()", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="cannot be captured in a CUDA graph"):
        refuse_cuda_graph_capture("the fused ALTO/Lamb kernels", torch.device("cuda"))


# --- compiled (not interpreted) kernels, checked in a child process without TRITON_INTERPRET ---

def _without_interpreter(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                       env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


SPECIALIZATION = """
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import make_backend
from triton.runtime.jit import create_function_from_signature
from alto.optim import fused
backend = make_backend(GPUTarget("cuda", 90, 64))
t = torch.zeros(64)
consts = dict(N_ROLES=6, ADAPT=True, BIAS_CORRECTION=True, DECAY=True, NORMS=True, LOAD_P=True,
              LERP_FROM_END=False, STATS=False, PRECISE=True, ALIGNED=True, N_DIV=16, BLOCK=2048, num_warps=8)
counts = [(16, 32), (17, 33), (1, 1), (292, 173000)]
def keys(kernel):
    bind = create_function_from_signature(kernel.signature, kernel.params, backend)
    return {str(bind(t, t, t, t, t, n, b, **consts)[1]) for n, b in counts}
print(len(keys(fused._pass1_kernel)), len(keys(triton.jit(fused._pass1_kernel.fn))))
bind = create_function_from_signature(fused._ratio_kernel.signature, fused._ratio_kernel.params, backend)
print(len({str(bind(t, t, t, t, t, t, n, b, NORMS=True, MODE=1, PRECISE=True, RBLOCK=1024)[1]) for n, b in counts}))
bind = create_function_from_signature(fused._pass2_kernel.signature, fused._pass2_kernel.params, backend)
print(len({str(bind(t, t, t, t, b, N_ROLES=6, STATS=False, ALIGNED=True, N_DIV=16, BLOCK=2048)[1]) for n, b in counts}))
"""


def test_kernels_are_not_specialised_on_tensor_and_block_counts():
    """Triton keys its compile cache on integer arguments' values (== 1, divisible by 16); the counts
    change with every model, so they are do_not_specialize: one compiled kernel for all of them."""
    pytest.importorskip("triton.backends.nvidia")
    lines = _without_interpreter(SPECIALIZATION).split()
    assert lines[0] == "1" and int(lines[1]) > 1, lines  # the same kernel without the hint: several variants
    assert lines[2:] == ["1", "1"], lines


SM90_COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from alto.optim import fused
target = GPUTarget("cuda", 90, 64)
def build(kernel, types, consts, warps):
    sig = {**types, **{name: "constexpr" for name in consts}}
    src = ASTSource(fn=kernel, signature=sig,
                    constexprs={(kernel.arg_names.index(n),): v for n, v in consts.items()})
    return triton.compile(src, target=target, options={"num_warps": warps}).asm["ptx"]
ptr = "*fp32"
for aligned in (True, False):
    ptx = build(fused._pass1_kernel,
                dict(ptrs="*i64", layout="*i64", scal=ptr, coef_ptr=ptr, partials=ptr, n_tensors="i32", n_blocks="i32"),
                dict(N_ROLES=6, ADAPT=True, BIAS_CORRECTION=True, DECAY=True, NORMS=True, LOAD_P=True,
                     LERP_FROM_END=False, STATS=True, PRECISE=True, ALIGNED=aligned, N_DIV=16 if aligned else 1,
                     BLOCK=2048), 8)
    print("pass1", aligned, "ld.global.v4" in ptx)
build(fused._ratio_kernel, dict(layout="*i64", scal=ptr, partials=ptr, scales=ptr, ratios=ptr, u_norms=ptr,
                                n_tensors="i32", n_blocks="i32"),
      dict(NORMS=True, MODE=2, PRECISE=True, RBLOCK=1024), 4)
ptx = build(fused._pass2_kernel, dict(ptrs="*i64", layout="*i64", scales=ptr, partials=ptr, n_blocks="i32"),
            dict(N_ROLES=6, STATS=True, ALIGNED=True, N_DIV=16, BLOCK=2048), 8)
print("pass2", True, "ld.global.v4" in ptx)
"""


@pytest.mark.slow
def test_kernels_compile_for_sm90_and_aligned_buckets_get_vector_loads():
    """Compiled for an H100/H200 (sm_90) without a GPU: the kernels build, and the alignment hints
    turn the masked loads of aligned buckets into 16-byte vector loads."""
    pytest.importorskip("triton.backends.nvidia")
    out = _without_interpreter(SM90_COMPILE)
    assert out.split("\n")[:3] == ["pass1 True True", "pass1 False False", "pass2 True True"], out


def test_fused_module_needs_no_triton_knobs():
    """Triton releases before 3.4 (e.g. the 3.1 of torch 2.5 images) have no triton.knobs: the
    module must import and know whether its kernels are interpreted without it."""
    code = ("import triton\n"
            "if hasattr(triton, 'knobs'): del triton.knobs\n"
            "from alto.optim import fused\n"
            "print(fused.INTERPRETED)\n")
    env_code = "import os; os.environ['TRITON_INTERPRET'] = '1'\n" + code
    assert _without_interpreter(env_code).strip() == "True"
    assert _without_interpreter(code).strip() == "False"


# --- the GPU smoke script's kernel checks, here on the CPU under the interpreter ---------------

@pytest.mark.parametrize("check", ["fused_matches_reference", "fused_other_branches", "fused_telemetry",
                                   "fused_determinism", "plan_is_cached"])
def test_kernel_checks_pass_under_the_interpreter(check):
    from alto.optim import kernel_checks

    args = {"fused_matches_reference": ("alto", "reference", True)}.get(check, ())
    steps = {"fused_matches_reference": 4, "fused_other_branches": 3, "fused_telemetry": 2,
             "fused_determinism": 2, "plan_is_cached": 2}[check]
    record = getattr(kernel_checks, check)(torch.device("cpu"), *args, steps=steps)
    assert record["ok"] is True, record
    if "fused_buckets" in record:
        assert record["fused_buckets"] > 0

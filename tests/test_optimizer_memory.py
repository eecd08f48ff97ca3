"""Memory is a cost too: optimizer state bytes per parameter, read off the real optimizers' state
tensors after a real training step, and the per-GPU fit that turns extra state into extra GPUs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alto.analysis.memory import (memory_fit, optimizer_state_bytes_per_param, run_state_bytes,
                                  state_bytes_per_param)
from alto.models import build_model
from alto.optim import build

# ALTO: m, v, a, prev; Lamb and AdamW: m, v; SGD-momentum: its buffer; LION: m. fp32 = 4 bytes each.
EXPECTED = {"alto": 16, "lamb": 8, "lamb_bc": 8, "adamw": 8, "sgd": 4, "lion": 4,
            "e_sgd": 12, "e_adam": 16, "e_adamw": 16}  # E adds a and prev to its base optimizer's


def one_step(name: str, **hparams) -> torch.optim.Optimizer:
    """A real MLP, a real loss, one step of optimizer `name`."""
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,))
    optimizer = build(name, model, 64, **hparams)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    return optimizer


def tensors_by_hand(optimizer: torch.optim.Optimizer) -> float:
    """Independent count: every per-parameter tensor in the state dict (nested for E), fp32."""
    def walk(obj) -> int:
        if torch.is_tensor(obj):
            return obj.numel() * obj.element_size() if obj.dim() else 0
        if isinstance(obj, dict):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0
    params = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    return walk(optimizer.state_dict()) / params


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_state_bytes_match_the_real_state_tensors(name):
    optimizer = one_step(name)
    measured = state_bytes_per_param(optimizer)
    assert measured == pytest.approx(EXPECTED[name])
    assert measured == pytest.approx(tensors_by_hand(optimizer))
    assert optimizer_state_bytes_per_param(name, batch_size=64) == pytest.approx(EXPECTED[name])  # the probe


def test_settings_change_the_state_and_bad_input_is_named():
    assert state_bytes_per_param(one_step("sgd", momentum=0.0)) == 0  # plain SGD keeps nothing
    assert optimizer_state_bytes_per_param("sgd", hparams={"momentum": 0.0}) == 0
    assert run_state_bytes({"optimizer": "alto", "config": {"batch_size": 4096}}) == 16
    assert run_state_bytes({"optimizer": "someone-elses", "config": {}}) is None  # a tracked outside optimizer
    empty = torch.optim.SGD([torch.zeros(0, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="no parameters"):
        state_bytes_per_param(empty)


def test_a_model_that_no_longer_fits_needs_more_gpus():
    # 1B parameters: Lamb's state is 7.45 GiB, ALTO's 14.9 GiB
    common = dict(n_params=1e9, gpu_gib=80, candidate_bytes_per_param=16, baseline_bytes_per_param=8,
                  gpus_per_job=8)
    roomy = memory_fit(baseline_gib_per_gpu=40, **common)
    assert roomy.fits and roomy.factor == 1 and roomy.candidate_gib == pytest.approx(40 + 8e9 / 2**30)
    tight = memory_fit(baseline_gib_per_gpu=75, **common)  # replicated: +7.45 GiB on every GPU
    assert not tight.fits and tight.gpus_candidate is None and tight.factor is None
    assert "Does not fit" in tight.sentence()
    sharded = memory_fit(baseline_gib_per_gpu=79.5, sharded=True, **common)
    # rest = 79.5 - 7.45/8 = 78.57 GiB; ALTO's 14.9 GiB of state needs ceil(14.9 / 1.43) = 11 GPUs
    assert sharded.gpus_candidate == 11 and sharded.factor == pytest.approx(8 / 11)
    assert "Needs 11 GPUs instead of 8" in sharded.sentence()
    for bad, match in (({"baseline_gib_per_gpu": 90}, "must not exceed"), ({"baseline_gib_per_gpu": 1},
                                                                            "smaller than the baseline"),
                       ({"baseline_gib_per_gpu": 40, "gpus_per_job": 0}, "gpus_per_job")):
        with pytest.raises(ValueError, match=match):
            memory_fit(**{**common, **bad})

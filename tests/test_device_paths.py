"""Host/device mixing in the training engine's CUDA path, caught without a GPU.

Under FakeTensorMode, tensors created in a `torch.device("cuda")` context are fake CUDA tensors,
and any op that combines them with a CPU tensor (other than a 0-d scalar) raises
FakeTensorDeviceMismatchError exactly as CUDA would. The engine's per-step work is driven here
piece by piece, in the order `train` calls it: batch selection, forward, the telemetry probes
around the optimizer step, the optimizer step itself, evaluation, and the gathering of a flush's
values for the one device-to-host copy. (Backward needs a real GPU; the gradients are set by hand.)
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from alto.data import load_dataset
from alto.models import build_model
from alto.optim import build
from alto.train import RunConfig
from alto.train.loop import BatchOrder, Plan, _image_loss, _text_loss, evaluate_on_device, micro_batches
from alto.train.telemetry import StepClock, StepProbes, Telemetry, gather_by_device

CUDA = torch.device("cuda")


def fake_cuda_data(name: str, **kw):
    """A real dataset, loaded on the CPU, copied into fake CUDA tensors inside `mode`."""
    return load_dataset(name, val_fraction=0.1, seed=0, **kw)


def check_all_on_cuda(values: dict) -> None:
    for key, t in values.items():
        assert t.device.type == "cuda", f"{key} is on {t.device}"


@pytest.mark.parametrize("optimizer", ["lamb", "lion", "sgd", "e_adamw", "adamw"])
def test_one_image_step_and_its_flush_stay_on_the_device(optimizer):
    config = RunConfig(dataset="digits", model="mlp", optimizer=optimizer, batch_size=64, device="cpu",
                       model_kwargs={"hidden": [32]})
    cpu_data = fake_cuda_data("digits")
    with FakeTensorMode(allow_non_fake_inputs=True), torch.device(CUDA):
        data = cpu_data.to(CUDA)
        plan = Plan(config, data)
        model = build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, hidden=[32])
        opt = build(optimizer, model, batch_size=plan.batch, lr=0.01)
        params = list(model.parameters())
        probes = StepProbes(opt, params, enabled=True)
        # the epoch's order is pinned and copied without a wait on a real GPU (pinning is not
        # faked): here it stays a host tensor, which CUDA indexing accepts as well
        order = BatchOrder(plan, seed=0, device=torch.device("cpu"))
        telemetry = Telemetry(None, StepClock(torch.device("cpu")), layer_names=probes.layer_names())
        for step in range(3):  # step 0 takes the curvature snapshot, step 1 measures it
            (x, y), = micro_batches(plan, data, config, step, order, torch.Generator(), None)
            loss, acc = _image_loss(model, data, x, y)
            for p in params:
                p.grad = torch.randn_like(p)
            values = {"train/loss": loss.detach(), "train/acc": acc.detach(),
                      **probes.before_step(detail=True, last=False)}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fused=None falls back: Triton cannot run fake tensors
                opt.step()
            opt.zero_grad(set_to_none=True)
            values.update(probes.after_step(detail=True))
            check_all_on_cuda(values)
            telemetry.add(step, values, {"lr": 0.01})
        assert "step_curvature" in telemetry.pending[1][1]
        tensors, _ = telemetry.device_values()
        gathered = gather_by_device(tensors)
        assert [flat.device.type for _, flat in gathered] == ["cuda"]
        scores = evaluate_on_device(model, data, config, lambda: torch.autocast("cuda", enabled=False))
        check_all_on_cuda(scores)
        assert len(gather_by_device(list(scores.values()))) == 1


def test_a_text_forward_stays_on_the_device():
    """(A CUDA generator, which text batches and text evaluation draw from, needs a real GPU:
    the batch is sliced by hand here.)"""
    cpu_data = fake_cuda_data("stdlib-chars", limit=20_000)
    with FakeTensorMode(allow_non_fake_inputs=True), torch.device(CUDA):
        data = cpu_data.to(CUDA)
        model = build_model("gpt-tiny", vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
        x, y = data.train[:64].view(4, 16), data.train[1:65].view(4, 16)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, acc = _text_loss(model, x, y)
        check_all_on_cuda({"loss": loss, "acc": acc})


def test_the_mixing_this_file_guards_against_is_caught():
    """The check itself works: a CPU tensor in a flush's concatenation raises, as on a GPU."""
    with FakeTensorMode(), torch.device(CUDA):
        loss = torch.randn(())
        with pytest.raises(Exception, match="device"):
            torch.cat([loss.reshape(-1), torch.tensor([0.1], device="cpu")])

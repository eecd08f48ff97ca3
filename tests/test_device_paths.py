"""Host/device mixing in the training engine's device path, caught without a GPU.

The "device" is torch's meta device (shapes, no data) under `NoDeviceMixing` (tests/device_mixing.py):
any operation that combines device tensors with host tensors (other than a 0-d number) raises, as it
would fail on CUDA, and any read of a device value on the host raises, as it would make the host wait.
The engine's step is driven piece by piece, in the order `train` calls it — batch selection,
forward and backward, the telemetry probes around the optimizer step, the step itself, evaluation —
and a flush's values are gathered for its one device-to-host copy. (The flush's copy itself and
the CUDA-event clock need a real GPU: `python -m alto.gpu_check` runs them.)
"""
from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from alto.data import load_dataset
from alto.models import build_model
from alto.optim import build
from alto.train import RunConfig
from alto.train.loop import BatchOrder, Plan, evaluate_on_device, forward_backward, micro_batches
from alto.train.telemetry import StepClock, StepProbes, Telemetry, gather_by_device
from device_mixing import DEVICE, DeviceMixingError, NoDeviceMixing


def no_autocast():
    return contextlib.nullcontext()


def check_on_device(values: dict) -> None:
    for key, t in values.items():
        assert t.device == DEVICE, f"{key} is on {t.device}"


@pytest.mark.parametrize("optimizer", ["alto", "lamb", "lion", "sgd", "e_adamw", "adamw"])
def test_image_steps_and_their_flush_stay_on_the_device(optimizer):
    config = RunConfig(dataset="digits", model="mlp", optimizer=optimizer, batch_size=64, device="cpu",
                       model_kwargs={"hidden": [32]})
    data = load_dataset("digits", val_fraction=0.1, seed=0).to(DEVICE)
    plan = Plan(config, data)
    model = build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, hidden=[32]).to(DEVICE)
    opt = build(optimizer, model, batch_size=plan.batch, lr=0.01)
    params = list(model.parameters())
    probes = StepProbes(opt, params, enabled=True)
    order = BatchOrder(plan, seed=0, device=DEVICE)
    telemetry = Telemetry(None, StepClock(torch.device("cpu")), layer_names=probes.layer_names())
    with NoDeviceMixing(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fused=None: no kernels on this device, the multi-tensor path
        if callable(prepare := getattr(opt, "prepare", None)):  # as set_up does, before the first step
            prepare()
        for step in range(3):  # step 0 takes the curvature snapshot, step 1 measures it
            batches = micro_batches(plan, data, config, step, order, None, None)
            loss, acc = forward_backward(model, data, batches, no_autocast, ddp=False)
            values = {"train/loss": loss, "train/acc": acc, **probes.before_step(detail=True, last=False)}
            opt.step()
            opt.zero_grad(set_to_none=True)
            values.update(probes.after_step(detail=True))
            check_on_device(values)
            telemetry.add(step, values, {"lr": 0.01})
        assert "step_curvature" in telemetry.pending[1][1]
        tensors, _ = telemetry.device_values()
        assert [flat.device for _, flat in gather_by_device(tensors)] == [DEVICE]
        scores = evaluate_on_device(model, data, config, no_autocast)
        check_on_device(scores)
        assert len(gather_by_device(list(scores.values()))) == 1


def test_a_text_step_stays_on_the_device():
    """(Text batches and text evaluation draw from a device generator, which needs a real device:
    the micro-batches are sliced by hand here.)"""
    data = load_dataset("stdlib-chars", val_fraction=0.1, seed=0, limit=20_000).to(DEVICE)
    model = build_model("gpt-tiny", vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2,
                        n_embd=16).to(DEVICE)
    opt = build("alto", model, batch_size=8, lr=0.01)
    with NoDeviceMixing(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = [(data.train[:64].view(4, 16), data.train[1:65].view(4, 16))] * 2  # accumulation of two
        loss, acc = forward_backward(model, data, batches, no_autocast, ddp=False)
        opt.step()
    check_on_device({"loss": loss, "acc": acc})


def test_the_stand_in_catches_the_mixing_the_old_flush_did():
    """The old flush concatenated CPU scalars (lr, step times) with the device losses."""
    loss = torch.ones((), device=DEVICE)
    with NoDeviceMixing(), pytest.raises(DeviceMixingError):
        torch.cat([loss.reshape(-1), torch.tensor([0.1])])

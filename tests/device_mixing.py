"""A stand-in for a GPU in CPU tests: device tensors on the "meta" device, and a dispatch mode that
refuses any operation mixing devices.

On a CUDA machine an operation that mixes host and device tensors either fails or waits for the
device. Here the "device" tensors live on torch's meta device (shapes, no data), so any read of a
device value on the host (.item(), .tolist(), bool()) raises, exactly where CUDA would wait, and
`NoDeviceMixing` raises on every operation that takes tensors from two devices, including the
multi-tensor (`_foreach_*`) ones whose own checks are lax on CPU and meta. Host tensors stay
real, so host bookkeeping (step counters, scalar tables) runs as it does next to a GPU.
The only mixing allowed is a 0-d CPU tensor as an operand of an elementwise op, which CUDA kernels
take as a number; the multi-tensor and fused kernels (`_foreach_*`, `_fused_*`) accept none.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

DEVICE = torch.device("meta")


class DeviceMixingError(AssertionError):
    pass


class NoDeviceMixing(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        multi_tensor = func.__name__.startswith(("_foreach_", "_fused_"))
        devices = {t.device for t in tensors if multi_tensor or not (t.device.type == "cpu" and t.dim() == 0)}
        if len(devices) > 1 and func not in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            raise DeviceMixingError(f"{func} mixes devices {sorted(map(str, devices))}")
        return func(*args, **kwargs)

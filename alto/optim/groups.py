"""The parameter-grouping rule every optimizer in a comparison shares."""
from __future__ import annotations

from torch import nn

NO_DECAY_MODULES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Reference exclusion rule: BatchNorm/LayerNorm parameters and every parameter whose name
    contains "bias" get weight_decay = 0 (for Lamb/ALTO that also means no trust ratio).

    Returns at most two groups (empty ones dropped), each with a `names` list for display.
    """
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = ([], []), ([], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        target = no_decay if ("bias" in name or id(p) in no_decay_ids) else decay
        target[0].append(p)
        target[1].append(name)
    groups = []
    if decay[0]:
        groups.append({"params": decay[0], "names": decay[1], "weight_decay": weight_decay})
    if no_decay[0]:
        groups.append({"params": no_decay[0], "names": no_decay[1], "weight_decay": 0.0})
    return groups

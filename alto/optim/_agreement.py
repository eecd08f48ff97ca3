"""How far two runs of an optimizer are apart: parameters and every state tensor.

Errors are relative to each tensor's scale (its largest absolute value), a measure that stays
meaningful where elements are near zero. The E state `a`, an EMA of gradient differences, is
about 100x smaller than the gradients it is computed from, so its rounding is measured against
the gradient scale, max |prev|.
"""
from __future__ import annotations

from torch import Tensor
from torch.optim import Optimizer


def relative_error(got: Tensor, want: Tensor, scale_of: Tensor | None = None) -> float:
    """max |got - want| / max |scale_of| (scale_of defaults to want); 0 for empty tensors."""
    if want.numel() == 0:
        return 0.0
    scale = (want if scale_of is None else scale_of).detach().abs().max().double().clamp_min(1e-30)
    return ((got.detach().double() - want.detach().double()).abs().max() / scale).item()


def max_relative_error(params_a: list[Tensor], opt_a: Optimizer, params_b: list[Tensor], opt_b: Optimizer) -> float:
    """Largest relative error over the parameters and their optimizer state; raises AssertionError
    when the state keys or step counts differ."""
    worst = 0.0
    for k, (p, q) in enumerate(zip(params_a, params_b)):
        worst = max(worst, relative_error(p, q))
        s, r = opt_a.state.get(p, {}), opt_b.state.get(q, {})
        if s.keys() != r.keys():
            raise AssertionError(f"parameter {k}: state keys differ: {sorted(s)} vs {sorted(r)}")
        for name in s:
            if name == "step":
                if s[name].item() != r[name].item():
                    raise AssertionError(f"parameter {k}: step {s[name].item()} vs {r[name].item()}")
            else:
                worst = max(worst, relative_error(s[name], r[name], r["prev"] if name == "a" else None))
    return worst

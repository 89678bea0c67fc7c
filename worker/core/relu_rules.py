"""How ReLUs treat the signal going down, applied for the duration of one computation.

Inside `relu_rule(rule)`, every ReLU — an `nn.ReLU` module (in place or not, reused or not) or a
`F.relu`/`torch.relu`/`relu_` call inside a forward — computes the same forward value, and its
backward follows `rule`:
- `deconvnet`: the incoming signal is rectified, whatever the forward input was (Z&F);
- `guided_backprop`: rectified and masked by the forward input being positive;
- `pass_through`: the signal passes unchanged (used to find receptive fields).
Nothing is patched or hooked: leaving the context restores plain autograd.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Rule = Literal["deconvnet", "guided_backprop", "pass_through"]

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, torch.ops.aten.relu.default, torch.ops.aten.relu_.default}


class _RuledReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str) -> torch.Tensor:
        ctx.rule = rule
        if rule == "guided_backprop":
            ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.rule == "deconvnet":
            return grad.clamp(min=0), None
        if ctx.rule == "guided_backprop":
            (x,) = ctx.saved_tensors
            return grad.clamp(min=0) * (x > 0).to(grad.dtype), None
        return grad, None


class _ReLURuleMode(TorchFunctionMode):
    def __init__(self, rule: Rule):
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELU_FUNCTIONS and args and isinstance(args[0], torch.Tensor):
            # In-place variants become out-of-place: callers use the returned tensor.
            return _RuledReLU.apply(args[0], self.rule)
        return func(*args, **(kwargs or {}))


@contextmanager
def relu_rule(rule: Rule | None):
    """`None` (plain gradient, i.e. saliency) changes nothing."""
    if rule is None:
        yield
        return
    with _ReLURuleMode(rule):
        yield

"""How ReLUs treat the signal going down, applied for the duration of one computation.

Inside `relu_rule(rule)`, every ReLU — an `nn.ReLU` module (in place or not, reused or not) or a
`F.relu`/`torch.relu`/`relu_` call inside a forward — computes the same forward value, and its
backward follows `rule`:
- `deconvnet`: the incoming signal is rectified, whatever the forward input was (Z&F);
- `guided_backprop`: rectified and masked by the forward input being positive;
- `pass_through`: the signal passes unchanged (used to find receptive fields).
Nothing is patched or hooked: leaving the context restores plain autograd.

The deconvnet and guided-backprop rules are defined for ReLU networks only: a GELU, SiLU,
sigmoid, softmax (attention) ... met under them raises `NonReLUNonlinearity` instead of being
differentiated as usual, which would silently compute something that is neither method. The
job kinds check the model's recorded layers first (service/kinds/layers.py); this catches
what a record does not show (a softmax inside an attention, an exported program's operators).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Rule = Literal["deconvnet", "guided_backprop", "pass_through"]

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, torch.ops.aten.relu.default, torch.ops.aten.relu_.default}


def _non_relu_functions() -> dict[object, str]:
    """Functions (torch, Tensor methods, aten operators) of nonlinearities other than ReLU."""
    named = {
        "gelu": [F.gelu], "silu": [F.silu], "mish": [F.mish], "hardswish": [F.hardswish],
        "hardsigmoid": [F.hardsigmoid], "elu": [F.elu], "selu": [F.selu, torch.selu], "celu": [F.celu],
        "leaky_relu": [F.leaky_relu], "prelu": [F.prelu, torch.prelu], "rrelu": [F.rrelu],
        "softplus": [F.softplus], "softsign": [F.softsign], "relu6": [F.relu6], "hardtanh": [F.hardtanh],
        "glu": [F.glu], "logsigmoid": [F.logsigmoid],
        "sigmoid": [torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid, torch.Tensor.sigmoid_],
        "tanh": [torch.tanh, F.tanh, torch.Tensor.tanh, torch.Tensor.tanh_],
        "softmax": [torch.softmax, F.softmax, torch.Tensor.softmax, F.log_softmax, torch.log_softmax,
                    torch.Tensor.log_softmax],
        "attention (softmax)": [F.scaled_dot_product_attention, F.multi_head_attention_forward],
    }  # fmt: skip
    aten = {
        "gelu": ["gelu"], "silu": ["silu"], "mish": ["mish"], "hardswish": ["hardswish"],
        "hardsigmoid": ["hardsigmoid"], "elu": ["elu"], "leaky_relu": ["leaky_relu"], "softplus": ["softplus"],
        "hardtanh": ["hardtanh", "relu6"], "sigmoid": ["sigmoid"], "tanh": ["tanh"],
        "softmax": ["_softmax", "softmax", "_safe_softmax", "_log_softmax", "log_softmax"],
        "attention (softmax)": ["scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
                                "_scaled_dot_product_efficient_attention", "_native_multi_head_attention"],
    }  # fmt: skip
    functions: dict[object, str] = {}
    for name, found in named.items():
        functions.update((function, name) for function in found)
    for name, operators in aten.items():
        for operator in operators:
            packet = getattr(torch.ops.aten, operator, None)
            for overload in packet.overloads() if packet is not None else []:
                functions[getattr(packet, overload)] = name
    return functions


NON_RELU_FUNCTIONS = _non_relu_functions()
STRICT_RULES = {"deconvnet", "guided_backprop"}  # defined for ReLU networks only


class NonReLUNonlinearity(RuntimeError):
    """A rule defined for ReLU networks met another nonlinearity in the forward pass."""

    def __init__(self, rule: str, nonlinearity: str):
        super().__init__(
            f"the {rule} rule is defined for ReLU networks only, and the forward pass to the layer "
            f"goes through a non-ReLU nonlinearity ({nonlinearity})"
        )
        self.rule = rule
        self.nonlinearity = nonlinearity


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
        if self.rule in STRICT_RULES and func in NON_RELU_FUNCTIONS:
            raise NonReLUNonlinearity(self.rule, NON_RELU_FUNCTIONS[func])
        return func(*args, **(kwargs or {}))


@contextmanager
def relu_rule(rule: Rule | None):
    """`None` (plain gradient, i.e. saliency) changes nothing."""
    if rule is None:
        yield
        return
    with _ReLURuleMode(rule):
        yield

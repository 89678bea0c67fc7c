"""Regularizers (Yosinski et al. 2015, "Understanding Neural Networks Through Deep
Visualization", section 3; plus total variation).

A regularizer either adds a penalty to the loss (`penalty(image) -> [N]`, subtracted from the
objective) or edits the image after an optimizer step (`after_step`), through the
parameterization's `scale_`, `blur_` and `mask_`, which act on the linear image (0 = grey) of
either basis. The render loop calls both hooks and knows nothing else of them.

- L2 decay: the linear image shrinks by a factor (1 - l2) each step (towards grey);
- Gaussian blur every n steps;
- norm clipping: pixels whose norm (over colour channels) is under a percentile become grey;
- contribution clipping: pixels whose contribution |sum_c x_c * dLoss/dx_c| (the first-order
  change of the objective if the pixel were grey) is under a percentile become grey;
- total variation: a penalty, weight * (mean |dx| + mean |dy|) of the RGB image in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worker.core.actmax.param import ImageParam


@dataclass
class StepState:
    step: int  # steps done, counting this one (1-based)
    linear: torch.Tensor  # the linear image the step was taken from (detached)
    linear_grad: torch.Tensor | None  # d(loss)/d(linear), for regularizers that ask for it


class Regularizer:
    needs_image_grad = False

    def penalty(self, image: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_step(self, param: ImageParam, state: StepState) -> None:
        return None

    def describe(self) -> dict:
        raise NotImplementedError


class L2Decay(Regularizer):
    def __init__(self, decay: float):
        self.decay = float(decay)

    def after_step(self, param, state):
        param.scale_(1.0 - self.decay)

    def describe(self):
        return {"l2": self.decay}


class BlurEvery(Regularizer):
    def __init__(self, every: int, sigma: float):
        self.every = int(every)
        self.sigma = float(sigma)

    def after_step(self, param, state):
        if state.step % self.every == 0:
            param.blur_(self.sigma)

    def describe(self):
        return {"blur_every": self.every, "blur_sigma": self.sigma}


def _keep_above(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """values [N, 1, H, W] -> a 0/1 mask keeping, per image, those at or above the percentile."""
    threshold = torch.quantile(values.flatten(1), percentile / 100.0, dim=1)
    return (values >= threshold.view(-1, 1, 1, 1)).to(values.dtype)


class NormClip(Regularizer):
    def __init__(self, percentile: float):
        self.percentile = float(percentile)

    def after_step(self, param, state):
        with torch.no_grad():
            norm = param.linear().norm(dim=1, keepdim=True)
            param.mask_(_keep_above(norm, self.percentile))

    def describe(self):
        return {"clip_norm_percentile": self.percentile}


class ContributionClip(Regularizer):
    needs_image_grad = True

    def __init__(self, percentile: float):
        self.percentile = float(percentile)

    def after_step(self, param, state):
        if state.linear_grad is None:
            return
        with torch.no_grad():
            contribution = (state.linear * state.linear_grad).sum(1, keepdim=True).abs()
            param.mask_(_keep_above(contribution, self.percentile))

    def describe(self):
        return {"clip_contribution_percentile": self.percentile}


class TotalVariation(Regularizer):
    def __init__(self, weight: float):
        self.weight = float(weight)

    def penalty(self, image):
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().flatten(1).mean(1)
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().flatten(1).mean(1)
        return self.weight * (dx + dy)

    def describe(self):
        return {"tv": self.weight}


def make_regularizers(
    *,
    l2: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    clip_norm_percentile: float = 0.0,
    clip_contribution_percentile: float = 0.0,
    tv: float = 0.0,
) -> list[Regularizer]:
    """Those that are switched on (a weight, period or percentile above 0)."""
    out: list[Regularizer] = []
    if tv > 0:
        out.append(TotalVariation(tv))
    if l2 > 0:
        out.append(L2Decay(l2))
    if blur_every > 0:
        out.append(BlurEvery(blur_every, blur_sigma))
    if clip_norm_percentile > 0:
        out.append(NormClip(clip_norm_percentile))
    if clip_contribution_percentile > 0:
        out.append(ContributionClip(clip_contribution_percentile))
    return out


def describe(regularizers: Sequence[Regularizer]) -> dict:
    out: dict = {}
    for r in regularizers:
        out.update(r.describe())
    return out

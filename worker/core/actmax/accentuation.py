"""Feature accentuation (Hamblin, Fel, Saha, Konkle & Alvarez 2024, "Feature Accentuation:
Revealing 'What' Features Respond to in Natural Images"): start from a real image (the seed)
instead of noise, and change it so that the unit fires more while its activations at a chosen
layer stay close to the seed's. What changes is what, in this image, drives the unit.

The optimization maximizes, per image i,

    objective_weight * objective_i(T(x_i))  -  weight_i * ||a(T(x_i)) - a(T(seed))|| / ||a(T(seed))||

where T is that step's random transform (the same for the image and the seed, so that the
seed's own term is exactly 0) and a() the layer's activation. The distance is the relative L2
distance, not its square: its gradient keeps the same scale at any distance, so one weight
balances the two terms over the whole run.

`weight` None (automatic) sets weight_i, once, to the ratio of the two terms' gradient norms
with respect to the image on the first step after the seed (on the seed itself the distance's
gradient is 0): the two pulls start equal, and the image moves only where the unit gains more
than the layer's activations change. With `objective_weight` 0 the seed is a fixed point: the
objective has no gradient, the distance's gradient is 0 at the seed, and Adam does not move.
"""

from __future__ import annotations

import torch

from worker.core.actmax.param import ImageParam

SEED_EPS = 1.0 / 512  # the seed's pixels are kept this far inside (0, 1): the sigmoid's inverse is finite


class Closeness:
    """The accentuation term of a render: keeps `layer`'s activations near the seed's."""

    def __init__(
        self,
        layer: str,
        seed: torch.Tensor,
        *,
        weight: float | None = None,
        objective_weight: float = 1.0,
    ):
        if seed.dim() != 4 or seed.shape[0] != 1 or seed.shape[1] != 3:
            raise ValueError(f"the seed is one RGB image [1, 3, H, W], not {list(seed.shape)}")
        self.layer = layer
        self.seed = seed
        self.fixed_weight = weight
        self.objective_weight = float(objective_weight)
        self.weights: torch.Tensor | None = None if weight is None else torch.tensor([float(weight)])

    @property
    def automatic(self) -> bool:
        return self.fixed_weight is None

    def distance(self, act: torch.Tensor, seed_act: torch.Tensor) -> torch.Tensor:
        """[N]: each image's relative L2 distance to the seed at the layer."""
        difference = (act - seed_act).flatten(1)
        scale = seed_act.flatten(1).norm(dim=1).clamp_min(1e-12)
        return torch.linalg.vector_norm(difference, dim=1) / scale

    def weight_on(self, n: int, device: torch.device) -> torch.Tensor:
        if self.weights is None:
            raise RuntimeError("the automatic weight is set on the first step after the seed")
        return self.weights.to(device).expand(n) if self.weights.numel() == 1 else self.weights.to(device)

    def calibrate(self, objective_grad: torch.Tensor, distance_grad: torch.Tensor) -> None:
        """The automatic weights: |d objective / d image| / |d distance / d image| per image
        (1 where either is 0: a silent unit, or an image that has not left the seed)."""
        top = (self.objective_weight * objective_grad).flatten(1).norm(dim=1)
        bottom = distance_grad.flatten(1).norm(dim=1)
        ratio = torch.where((top > 0) & (bottom > 0), top / bottom.clamp_min(1e-30), torch.ones_like(top))
        self.weights = ratio.detach().cpu()

    def describe(self) -> dict:
        weights = self.weights.tolist() if self.weights is not None else None
        return {
            "layer": self.layer,
            "objective_weight": self.objective_weight,
            "weight": weights if self.automatic else self.fixed_weight,
            "weight_automatic": self.automatic,
        }


def start_from_seed(param: ImageParam, seed: torch.Tensor) -> None:
    """Set every image of `param` to `seed` [1, 3, H, W] in [0, 1] (at the param's size): the
    inverse of `param.to_rgb` (logit, then the colour mixing's inverse), written with
    `set_linear_`. The fft basis drops the Nyquist row and column, so the start is the seed
    without its 2-px checkerboard; `param.output()` right after shows exactly where it starts."""
    if tuple(seed.shape[-2:]) != (param.height, param.width):
        raise ValueError(f"the seed is {list(seed.shape[-2:])}, the images {[param.height, param.width]}")
    image = seed.to(param.device).clamp(SEED_EPS, 1 - SEED_EPS)
    if param.valid == "sigmoid":
        linear = torch.logit(image)
    else:
        linear = image - 0.5
    if param.decorrelate:
        inverse = torch.linalg.inv(param._colour)
        linear = torch.einsum("nchw,dc->ndhw", linear, inverse)
    param.set_linear_(linear.expand(param.n, -1, -1, -1).contiguous())

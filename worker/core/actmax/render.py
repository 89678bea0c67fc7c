"""The optimization loop, and the measurements of its result.

`render` knows the parts only by their interfaces: a parameterization gives images in [0, 1]
(`param.linear()`, `param.to_rgb`), transforms map images with pre-drawn random numbers, a
`ModelInput` makes the model's input, `capture_activation` runs the model only up to the
objective's layer, the objective gives one value per image, regularizers add penalties and
edit the image after each step. All units of a job are one batch: one forward and one backward
per step for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from worker.core.actmax.accentuation import Closeness
from worker.core.actmax.objectives import Diversity, Objective
from worker.core.actmax.param import ImageParam
from worker.core.actmax.regularizers import Regularizer, StepState
from worker.core.actmax.transforms import Compose
from worker.core.imaging import normalize
from worker.core.probe import capture_activation, capture_activations

DEAD_CHECK_STEPS = 16  # a job whose every gradient stayed exactly 0 this long is dead
REPORT_EVERY = 8  # steps between the callback's values (reading them waits for the device)


class DeadObjective(Exception):
    """Every image's gradient stayed exactly zero: the objective does not respond to the input
    (e.g. a ReLU unit that is never active on the images the optimization starts from)."""

    def __init__(self, images: Sequence[int], steps: int):
        self.images = list(images)
        self.steps = steps
        super().__init__(f"the gradient of images {self.images} was zero for {steps} steps")


class NonFiniteObjective(Exception):
    """The objective became NaN or infinite."""


class ModelInput:
    """RGB images in [0, 1] [N, 3, h, w] -> the model's input per its contract: resized to its
    size (bilinear; antialiased when shrinking), luminance for one-channel models, normalized
    with its mean and std (worker.core.imaging.normalize's definition)."""

    def __init__(self, contract: dict[str, Any], device: str | torch.device):
        spec = contract["image"] if "image" in contract else contract
        self.spec = spec
        self.size = tuple(int(v) for v in spec["size"])
        self.channels = int(spec.get("channels", 3))
        if self.channels not in (1, 3):
            raise ValueError(f"image models take 1 or 3 channels, not {self.channels}")
        zero = torch.zeros(1, self.channels, 1, 1, device=device)
        self.shift = normalize(zero, spec)  # -mean / std
        self.gain = normalize(zero + 1.0, spec) - self.shift  # 1 / std
        self._luma = torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape[-2:]) != self.size:
            shrinking = image.shape[-2] > self.size[0] or image.shape[-1] > self.size[1]
            image = F.interpolate(image, size=self.size, mode="bilinear", align_corners=False, antialias=shrinking)
        if self.channels == 1:
            image = (image * self._luma).sum(1, keepdim=True)
        return image * self.gain + self.shift


@dataclass
class RenderResult:
    images: torch.Tensor  # [N, 3, H, W] in [0, 1], on the CPU
    history: torch.Tensor  # [steps, N]: the objective under that step's transforms
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> [N, 3, H, W]
    dead: list[bool] = field(default_factory=list)  # images whose gradient was 0 at every step
    transparency: torch.Tensor | None = None  # [N, H, W] in [0, 1]: accumulated |d score / d pixel|
    closeness: torch.Tensor | None = None  # [N]: accentuation's distance to the seed at the last step
    seconds: float = 0.0
    step_seconds: float = 0.0


def _per_image_nonzero(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    out = None
    for tensor in tensors:
        if tensor.grad is None:
            continue
        nonzero = tensor.grad.detach().flatten(1).abs().amax(1) > 0
        out = nonzero if out is None else out | nonzero
    return out


def render(
    model: nn.Module,
    objective: Objective,
    param: ImageParam,
    *,
    to_input: Callable[[torch.Tensor], torch.Tensor],
    transforms: Compose,
    generator: torch.Generator,
    steps: int,
    lr: float = 0.05,
    optimizer: str = "adam",
    regularizers: Sequence[Regularizer] = (),
    diversity: Diversity | None = None,
    thresholds: Sequence[int] = (),
    callback: Callable[[int, int, list[float] | None], None] | None = None,
    report_every: int = REPORT_EVERY,
    output_size: tuple[int, int] | None = None,
    closeness: Closeness | None = None,
    transparency: bool = False,
) -> RenderResult:
    """Maximize `objective` over the images of `param` for `steps` steps.

    The images are optimized at the parameterization's size and returned at `output_size`
    (default: the same; see `ImageParam.output`).
    `callback(step, steps, values)` runs after every step (the place to check for cancel);
    `values` (each image's current objective) is given every `report_every` steps and at the
    end, None otherwise. Raises DeadObjective when every image's gradient stayed 0 for the first
    DEAD_CHECK_STEPS steps, NonFiniteObjective on NaN or infinity.

    `closeness` (feature accentuation) adds its term and scales the objective by its
    `objective_weight`; start `param` from the seed first (`accentuation.start_from_seed`).
    `transparency` accumulates each pixel's |gradient| of the score over the steps (MACO's
    transparency map), returned per image normalized to [0, 1].
    """
    device = param.device
    n = objective.n
    if param.n != n:
        raise ValueError(f"the parameterization holds {param.n} images, the objective {n}")
    # All of the job's transform randomness, drawn once from the seeded CPU generator.
    noise = torch.rand(steps, n, max(transforms.dims, 1), generator=generator).to(device)
    tensors = param.parameters()
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(tensors, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(tensors, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    needs_image_grad = any(r.needs_image_grad for r in regularizers)
    use_diversity = diversity is not None and diversity.active
    history = torch.zeros(steps, n, device=device)
    alive = torch.zeros(n, dtype=torch.bool, device=device)
    wanted = set(thresholds)
    snapshots: dict[int, torch.Tensor] = {}
    # With no objective to follow (objective_weight 0) a still image is the expected result.
    dead_check = 0 if closeness is not None and closeness.objective_weight == 0 else min(DEAD_CHECK_STEPS, steps)
    accumulated = None
    near = None
    started = time.perf_counter()
    for t in range(steps):
        linear = param.linear()
        if needs_image_grad:
            linear.retain_grad()
        image = param.to_rgb(linear)
        calibrating = closeness is not None and closeness.automatic and t == 1
        if transparency:
            image.retain_grad()
        moved = transforms(image, noise[t])
        if closeness is None:
            act = capture_activation(model, to_input(moved), objective.layer)
        else:
            seed = transforms(closeness.seed.to(device).expand(n, -1, -1, -1), noise[t])
            act, near = _with_closeness(model, closeness, to_input, seed, moved, objective.layer)
        value = objective.value(act)
        score = value if closeness is None else closeness.objective_weight * value
        if closeness is not None:
            if calibrating:
                objective_grad, distance_grad = (
                    torch.autograd.grad(term.sum(), image, retain_graph=True)[0] for term in (value, near)
                )
                closeness.calibrate(objective_grad, distance_grad)
            if closeness.weights is not None:
                score = score - closeness.weight_on(n, device) * near
        bonus = objective.bonus(act, t / steps)
        if bonus is not None:
            score = score + bonus
        if use_diversity:
            score = score - diversity.penalty(act)
        for regularizer in regularizers:
            penalty = regularizer.penalty(image)
            if penalty is not None:
                score = score - penalty
        opt.zero_grad(set_to_none=True)
        inputs = [*tensors, linear] if needs_image_grad else list(tensors)
        (-score.sum()).backward(inputs=[*inputs, image] if transparency else inputs)
        history[t] = value.detach()
        if transparency:
            magnitude = image.grad.detach().abs().sum(1)
            accumulated = magnitude if accumulated is None else accumulated + magnitude
        # Watched at every step, not only the first few: a unit silent at first may fire later
        # (a jitter that lands its pattern), and then it is not dead.
        nonzero = _per_image_nonzero(tensors)
        if nonzero is not None:
            alive |= nonzero
        opt.step()
        if regularizers:
            state = StepState(t + 1, linear.detach(), linear.grad if needs_image_grad else None)
            for regularizer in regularizers:
                regularizer.after_step(param, state)
        done = t + 1
        if dead_check and done == dead_check and not bool(alive.any()):
            raise DeadObjective(list(range(n)), dead_check)
        if done in wanted:
            with torch.no_grad():
                snapshots[done] = param.output(output_size).detach().cpu()
        report = done % report_every == 0 or done == steps
        values = None
        if report:
            values = history[t].tolist()
            if not all(v == v and abs(v) != float("inf") for v in values):
                raise NonFiniteObjective(f"the objective is not finite at step {done}: {values}")
        if callback is not None:
            callback(done, steps, values)
    with torch.no_grad():
        images = param.output(output_size).detach().cpu()
    seconds = time.perf_counter() - started
    return RenderResult(
        images=images,
        history=history.cpu(),
        snapshots=snapshots,
        dead=[not bool(a) for a in alive.cpu()],
        seconds=seconds,
        step_seconds=seconds / steps,
        transparency=_normalized(accumulated) if accumulated is not None else None,
        closeness=near.detach().cpu() if near is not None else None,
    )


def _with_closeness(
    model: nn.Module,
    closeness: Closeness,
    to_input: Callable[[torch.Tensor], torch.Tensor],
    seed: torch.Tensor,
    moved: torch.Tensor,
    layer: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective layer's activation of the transformed images, and each image's distance
    to the seed under the same transform at the closeness layer (one forward pass for both
    layers; the seed's without gradients)."""
    with torch.no_grad():
        seed_act = capture_activation(model, to_input(seed), closeness.layer)
    acts = capture_activations(model, to_input(moved), [layer, closeness.layer])
    return acts[layer], closeness.distance(acts[closeness.layer], seed_act)


def _normalized(accumulated: torch.Tensor) -> torch.Tensor:
    """Each image's map divided by its own maximum (a map that stayed 0 stays 0)."""
    top = accumulated.flatten(1).amax(1).clamp_min(1e-30)[:, None, None]
    return (accumulated / top).cpu()


@torch.no_grad()
def measure_images(
    model: nn.Module,
    objective: Objective,
    images: torch.Tensor,
    *,
    to_input: Callable[[torch.Tensor], torch.Tensor],
    transforms: Compose,
    generator: torch.Generator,
    robust_samples: int = 8,
) -> dict[str, Any]:
    """Measurements of final images [N, 3, H, W]: `activation` (the objective, no transforms),
    `robust_activation` (its mean over `robust_samples` random transforms), `is_top_unit`
    (the unit is the strongest of its layer on its image; None where units mean nothing) and
    `top_unit`."""
    device = next((p.device for p in model.parameters()), images.device)
    images = images.to(device)
    act = capture_activation(model, to_input(images), objective.layer)
    activation = objective.value(act)
    scores = objective.scores(act)
    top_unit = scores.argmax(1) if scores is not None else None
    robust = torch.zeros_like(activation)
    if len(transforms) and robust_samples > 0:
        for _ in range(robust_samples):
            u = torch.rand(images.shape[0], max(transforms.dims, 1), generator=generator).to(device)
            robust += objective.value(capture_activation(model, to_input(transforms(images, u)), objective.layer))
        robust /= robust_samples
    else:
        robust = activation.clone()
    units = objective.image_units
    return {
        "activation": activation.cpu().tolist(),
        "robust_activation": robust.cpu().tolist(),
        "top_unit": top_unit.cpu().tolist() if top_unit is not None else [None] * len(units),
        "is_top_unit": [bool(int(t) == u) for t, u in zip(top_unit.cpu().tolist(), units)]
        if top_unit is not None
        else [None] * len(units),
    }


@torch.no_grad()
def unit_maxima(
    model: nn.Module, objective: Objective, batches: Iterable[torch.Tensor]
) -> tuple[list[float], list[int]]:
    """Each of `objective.unit_ids`' strongest value over the inputs (model input tensors, in
    batches) and the index of the input where it is reached."""
    values, where = unit_top(model, objective, batches, 1)
    return [row[0] for row in values], [row[0] for row in where]


@torch.no_grad()
def unit_top(
    model: nn.Module, objective: Objective, batches: Iterable[torch.Tensor], k: int
) -> tuple[list[list[float]], list[list[int]]]:
    """Each of `objective.unit_ids`' `k` strongest values over the inputs (model input tensors,
    in batches), strongest first, and the indexes of the inputs where they are reached (the
    earlier input first among equal values)."""
    best: torch.Tensor | None = None  # [U, <=k]
    where: torch.Tensor | None = None
    offset = 0
    for x in batches:
        values = objective.per_unit(capture_activation(model, x, objective.layer)).T  # [U, B]
        index = torch.arange(offset, offset + x.shape[0], device=values.device).expand_as(values)
        offset += x.shape[0]
        if best is not None:
            values, index = torch.cat([best, values], 1), torch.cat([where, index], 1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
        best, where = values.gather(1, order), index.gather(1, order)
    if best is None:
        raise ValueError("no inputs")
    return best.cpu().tolist(), where.cpu().tolist()

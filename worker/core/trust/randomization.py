"""The randomization sanity check for projections (Adebayo et al. 2018, "Sanity checks for
saliency maps").

A projection meant to show what a unit learned should change when the weights it passes through
are replaced by random ones. Adebayo et al. found that guided backprop (and, with it, the
deconvnet) can return nearly the same map from a network whose weights are random: such a map
shows the image (its edges), not the model. The check: project the same units of the same
images through a randomized copy of the model and measure how alike the two maps are.

"Randomized" here: every parameterized module the projection passes through (`modules_below`)
is re-initialized as a freshly built one would be, by its own `reset_parameters()` (Conv,
Linear, BatchNorm, LayerNorm, Embedding, ...; MultiheadAttention's `_reset_parameters()`),
which for BatchNorm also resets the running statistics (mean 0, variance 1) and for the norm
layers sets weight 1 and bias 0; a module with parameters but no reset method (a class token, a
position embedding, a layer scale) gets each of its own parameters redrawn from a normal
distribution with that parameter's mean and standard deviation (a constant one is kept).
Buffers other than a reset's (an index table, an input normalization's mean) are left alone.
Each module's draw comes from its own generator, seeded from the check's seed and the module's
name, on the CPU: the copy is the same for a seed on every device, and the random weights of one
module do not depend on which others are randomized (as in Adebayo et al.'s cascade).

Similarity of a real map and its randomized counterpart (a projection [C, H, W] reduced to one
[H, W] map by summing |p| over the channels): Spearman's rank correlation (Adebayo et al.'s
"absolute value" variant; the signed one is reported too) and SSIM (ssim.py, on the maps scaled
to [0, 1]), both over the pixels where either map is nonzero. Adebayo et al. projected class
logits, whose maps cover the whole image; a unit of an inner layer has a receptive field, and
the magnitude of any of its projections falls off from the field's centre (the effective
receptive field, Luo et al. 2016) whatever the weights are. That shared profile alone gives rank
correlations of ~0.8 between two maps of a deep unit of the built-in model that have nothing
else in common (two images, or trained and random weights). So each number is compared with a
control: the same measure between the real map and the randomized model's map of the same unit
and position in ANOTHER image, which shares the profile and nothing else; the corrected
similarity (observed - control) / (1 - control) (Cohen's kappa's correction for chance) is 1
for maps identical after randomization and about 0 for maps no more alike than the profile
makes them. THE number is the corrected rank correlation.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from worker.core.deconvnet import Neuron, ProjectionMethod, project
from worker.core.probe import capture_activation
from worker.core.trust.correlation import spearman_pairs
from worker.core.trust.ssim import WINDOW, normalize_maps, ssim

# Corrected rank correlation at or above which projections are flagged: the randomized maps keep
# at least half of the real map's agreement beyond the receptive field's profile, i.e. they are
# closer to "unchanged" (1) than to "as different as another image" (0). A convention, not a
# number from the paper. On the built-in model, full randomization gives about 0 to 0.1 for all
# three methods at every layer (the maps visibly turn to noise); no randomization gives 1.
FLAG_THRESHOLD = 0.5

DEFINITION = (
    "Randomization sanity check (Adebayo et al., 2018): the projections are recomputed on a copy of the model whose "
    "parameterized layers from the unit's layer down to the input are re-initialized (seeded), and compared with the "
    "real ones by the Spearman rank correlation of the absolute maps (summed over colour channels, over the pixels "
    "where either is nonzero), corrected for what the unit's receptive field alone gives: "
    "(observed - control) / (1 - control), where the control compares the real map with the randomized model's "
    "map of another image at the same unit and position (SSIM is reported the same way). "
    f"A corrected rank correlation of {FLAG_THRESHOLD} or more is flagged: the projection barely depends on the "
    "learned weights."
)


def is_parameterized(module: nn.Module) -> bool:
    """Holds weights of its own: parameters, or running statistics (a norm layer's)."""
    if next(module.parameters(recurse=False), None) is not None:
        return True
    return isinstance(module, _NormBase) and module.track_running_stats


def parameterized_modules(model: nn.Module) -> list[str]:
    """Every module (by name; "" is the root) that holds weights of its own: all of them
    randomized is the "fully randomized" model."""
    return [name for name, module in model.named_modules() if is_parameterized(module)]


@torch.no_grad()
def modules_below(model: nn.Module, example: torch.Tensor, layer: str) -> list[str]:
    """The modules to randomize for a projection of a unit of `layer` (a name as
    `inspect_layers` lists it): every module that holds weights of its own (`is_parameterized`)
    and whose forward began before `layer`'s output existed, in a forward pass on `example`
    (stopped there), in the order they began. That is `layer` itself when it is such a module,
    every parameterized module whose output the projection passes through on its way to the
    input, and any container holding `layer` that has weights of its own (a ViT's class token
    and position embedding). A container's own weight used only after `layer` inside it (a
    ConvNeXt block's layer scale for a layer in the block) is in the set too; it cannot change
    the projection. Modules after `layer` (the head) are not: the projection never reaches them."""
    names = {module: name for name, module in model.named_modules()}
    entered: dict[str, None] = {}

    def pre_hook(module, _inputs) -> None:
        if is_parameterized(module):
            entered.setdefault(names[module], None)

    handles = [module.register_forward_pre_hook(pre_hook) for module in names]
    try:
        capture_activation(model, example[:1], layer)
    finally:
        for handle in handles:
            handle.remove()
    return list(entered)


def randomized_copy(model: nn.Module, modules: Iterable[str], seed: int) -> nn.Module:
    """A deep copy of `model` with the weights of `modules` (names; "" is the root)
    re-initialized as the module docstring says; the same for the same seed and modules, on any
    device. `model` itself is untouched."""
    twin = copy.deepcopy(model)
    for name in dict.fromkeys(modules):
        _reinitialize(twin.get_submodule(name), module_seed(seed, name))
    return twin


def module_seed(seed: int, name: str) -> int:
    """One module's generator seed: the check's seed and the module's name, stably (crc32)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


@torch.no_grad()
def _reinitialize(module: nn.Module, seed: int) -> None:
    own_parameters = dict(module.named_parameters(recurse=False))
    own_buffers = dict(module.named_buffers(recurse=False))
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
    if callable(reset):
        # Reset a CPU twin under a seeded CPU generator (restored after), then copy its own
        # weights back: the draws do not depend on the device, nor disturb anyone's RNG.
        scratch = copy.deepcopy(module).to("cpu")
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            getattr(scratch, reset.__name__)()
        for name, tensor in own_parameters.items():
            tensor.copy_(getattr(scratch, name))
        for name, tensor in own_buffers.items():
            fresh = getattr(scratch, name)
            if isinstance(fresh, torch.Tensor):
                tensor.copy_(fresh)
        return
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for _name, tensor in sorted(own_parameters.items()):
        values = tensor.detach().to("cpu", torch.float64)
        spread = float(values.std()) if values.numel() > 1 else 0.0
        if not math.isfinite(spread) or spread == 0.0:
            continue
        drawn = torch.randn(values.shape, generator=generator, dtype=torch.float64) * spread + float(values.mean())
        tensor.copy_(drawn.to(tensor.device, tensor.dtype))


def projection_maps(projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections [N, C, H, W] (or maps [N, H, W]) -> (absolute maps, signed maps), [N, H, W]
    each, float64: the sum over the channels of |p| and of p."""
    values = projections.detach().to(torch.float64).cpu()
    if values.dim() == 3:
        return values.abs(), values
    if values.dim() != 4:
        raise ValueError(f"expected projections [N, C, H, W] or maps [N, H, W], got {tuple(values.shape)}")
    return values.abs().sum(dim=1), values.sum(dim=1)


def support_box(a: torch.Tensor, b: torch.Tensor, minimum: int = WINDOW) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the smallest box holding every pixel where map `a` or `b` ([H, W]) is
    nonzero, grown evenly (within the map) to at least `minimum` pixels a side, for SSIM's
    window; the whole map when both are zero."""
    height, width = a.shape
    joint = (a != 0) | (b != 0)
    if not bool(joint.any()):
        return 0, height, 0, width
    rows = joint.any(dim=1).nonzero().flatten()
    cols = joint.any(dim=0).nonzero().flatten()
    y0, y1 = _grown(int(rows[0]), int(rows[-1]) + 1, height, minimum)
    x0, x1 = _grown(int(cols[0]), int(cols[-1]) + 1, width, minimum)
    return y0, y1, x0, x1


def _grown(low: int, high: int, size: int, minimum: int) -> tuple[int, int]:
    target = min(max(minimum, high - low), size)
    low = max(0, low - (target - (high - low)) // 2)
    high = low + target
    if high > size:
        low, high = size - target, size
    return low, high


@dataclass(frozen=True)
class PairScores:
    """Similarity of map pairs (real[i], other[i]), per pair."""

    rank_correlation: list[float]  # Spearman of the absolute maps over their joint support
    rank_correlation_signed: list[float]  # the same on the signed maps
    ssim: list[float]  # SSIM of the absolute maps cropped to the joint support's box, each scaled to [0, 1]


def map_scores(real: torch.Tensor, other: torch.Tensor) -> PairScores:
    """Compare each real[i] with other[i] ([N, C, H, W] or [N, H, W] each, the same shape).

    Only the pixels where at least one of the two maps is nonzero count (the joint support):
    outside a unit's receptive field every projection is zero by the architecture, whatever
    the weights, and those ties would make any two maps of a unit look alike. SSIM: each
    absolute map scaled to [0, 1] by its own range, averaged over the windows inside the box
    around the joint support (`support_box`), for the same reason."""
    if real.shape != other.shape:
        raise ValueError(f"projections of different shapes: {tuple(real.shape)} and {tuple(other.shape)}")
    real_abs, real_signed = projection_maps(real)
    other_abs, other_signed = projection_maps(other)
    joint = ((real_abs != 0) | (other_abs != 0)).flatten(1)
    rank = spearman_pairs(real_abs.flatten(1), other_abs.flatten(1), where=joint)
    signed = spearman_pairs(real_signed.flatten(1), other_signed.flatten(1), where=joint)
    boxes = [support_box(a, b) for a, b in zip(real_abs, other_abs, strict=True)]
    structural = ssim(normalize_maps(real_abs), normalize_maps(other_abs), data_range=1.0, boxes=boxes)
    return PairScores(rank.tolist(), signed.tolist(), structural.tolist())


def chance_corrected(observed: float, chance: float) -> float | None:
    """(observed - chance) / (1 - chance), as Cohen's kappa corrects agreement for chance: 1 for
    identical maps, 0 for maps no more alike than the control pair; None when the control pair
    is already identical (nothing left to compare)."""
    if not (math.isfinite(observed) and math.isfinite(chance)) or chance >= 1.0 - 1e-12:
        return None
    return (observed - chance) / (1.0 - chance)


@dataclass(frozen=True)
class ProjectionSimilarity:
    randomized: PairScores  # (real[i], randomized[i])
    control: PairScores | None  # (real[i], the randomized model's map of another image, same unit and position)
    threshold: float = FLAG_THRESHOLD

    @property
    def rank_correlation(self) -> float:
        return _mean(self.randomized.rank_correlation)

    @property
    def ssim(self) -> float:
        return _mean(self.randomized.ssim)

    @property
    def corrected_rank_correlation(self) -> float | None:
        """THE number: the mean rank correlation, corrected for the control's."""
        if self.control is None:
            return None
        return chance_corrected(self.rank_correlation, _mean(self.control.rank_correlation))

    @property
    def corrected_ssim(self) -> float | None:
        if self.control is None:
            return None
        return chance_corrected(self.ssim, _mean(self.control.ssim))

    @property
    def flagged(self) -> bool | None:
        """The projections barely depend on the learned weights: the corrected rank correlation
        at or above the threshold (True as well when the control maps equal the real ones: then
        neither the weights nor the image change them). None without a control."""
        if self.control is None:
            return None
        corrected = self.corrected_rank_correlation
        return True if corrected is None else corrected >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        control = self.control
        maps = []
        for i in range(len(self.randomized.rank_correlation)):
            entry = {
                "rank_correlation": self.randomized.rank_correlation[i],
                "rank_correlation_signed": self.randomized.rank_correlation_signed[i],
                "ssim": self.randomized.ssim[i],
            }
            if control is not None:
                entry["control_rank_correlation"] = control.rank_correlation[i]
                entry["control_ssim"] = control.ssim[i]
            maps.append(entry)
        return {
            "definition": DEFINITION,
            "measure": "corrected_rank_correlation",
            "threshold": self.threshold,
            "flagged": self.flagged,
            "corrected_rank_correlation": self.corrected_rank_correlation,
            "corrected_ssim": self.corrected_ssim,
            "rank_correlation": self.rank_correlation,
            "rank_correlation_signed": _mean(self.randomized.rank_correlation_signed),
            "ssim": self.ssim,
            "control_rank_correlation": _mean(control.rank_correlation) if control is not None else None,
            "control_ssim": _mean(control.ssim) if control is not None else None,
            "maps": maps,
        }


def projection_similarity(
    real: torch.Tensor,
    randomized: torch.Tensor,
    control: torch.Tensor | None = None,
    threshold: float = FLAG_THRESHOLD,
) -> ProjectionSimilarity:
    """How alike each real projection real[i] and its randomized counterpart randomized[i]
    are, against `control[i]`: the randomized model's projection of the same unit at the same
    position in another image (`control_neurons`). All [N, C, H, W] (or [N, H, W]), the same
    shape. Without a control the raw numbers are reported and `flagged` is None."""
    return ProjectionSimilarity(
        map_scores(real, randomized), map_scores(real, control) if control is not None else None, threshold
    )


def control_neurons(neurons: Sequence[Neuron]) -> list[Neuron] | None:
    """For each neuron, the same channel and position in another image: the image of the next
    neuron (cyclically) whose image differs. None when all neurons share one image."""
    controls = []
    for i, neuron in enumerate(neurons):
        other = next(
            (
                neurons[(i + step) % len(neurons)]
                for step in range(1, len(neurons))
                if neurons[(i + step) % len(neurons)].image_index != neuron.image_index
            ),
            None,
        )
        if other is None:
            return None
        controls.append(Neuron(other.image_index, neuron.channel, neuron.position, neuron.activation))
    return controls


@dataclass(frozen=True)
class RandomizationCheck:
    similarity: ProjectionSimilarity
    method: str
    seed: int
    randomized_modules: list[str]
    randomized_projections: torch.Tensor  # [N, C, H, W], for display beside the real ones

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.similarity.to_dict(),
            "method": self.method,
            "seed": self.seed,
            "randomized_modules": list(self.randomized_modules),
        }


def randomization_check(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    neurons: Sequence[Neuron],
    method: ProjectionMethod,
    seed: int = 0,
    real: torch.Tensor | None = None,
    modules: Sequence[str] | None = None,
    batch_size: int = 32,
    check: Callable[[], None] | None = None,
) -> RandomizationCheck:
    """The whole check for projections of `neurons` (as `deconvnet.project` takes them): the
    randomized copy (`modules`, default `modules_below(model, images, layer)`), its
    projections of the same neurons and of the control neurons (2 projection passes; `real`,
    the job's own projections, saves the third), and their similarity."""
    names = list(modules) if modules is not None else modules_below(model, images[:1], layer)
    twin = randomized_copy(model, names, seed)
    if real is None:
        real = project(model, images, layer, neurons, method, batch_size, check)
    randomized = project(twin, images, layer, neurons, method, batch_size, check)
    others = control_neurons(neurons)
    control = project(twin, images, layer, others, method, batch_size, check) if others is not None else None
    return RandomizationCheck(projection_similarity(real, randomized, control), method, seed, names, randomized)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")

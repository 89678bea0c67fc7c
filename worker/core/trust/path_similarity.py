"""Path similarity: does the network process a visualization like the photos that excite the unit?

Geirhos et al. (ICML 2024, "Don't trust your eyes: on the (un)reliability of feature
visualizations") show that a network can be rigged so that a unit's feature visualization shows
anything while its behaviour on natural images is unchanged, and propose a sanity check: follow
the visualization through the layers below the unit and ask whether its activations look like
those of the natural images that excite the unit (its top dataset exemplars). Here:

- each image is summarized, at each compared layer, by the spatial mean of every channel (a
  global average pool; a transformer's feature, by its mean over the tokens). Geirhos et al.
  correlate the layer's activations themselves; averaging first makes the comparison ask
  *which features* are present rather than *where*: a visualization shows its pattern all over
  the frame while an exemplar shows it once, somewhere, so position-by-position correlation
  would mostly measure layout, and the exemplars would not even agree with each other. It also
  makes the vectors small (channels, not channels x positions);
- the similarity of two images at a layer is the Spearman rank correlation of their vectors
  (correlation.py: scale-free, so a visualization that excites everything ten times more than
  a photo still matches it when it excites the same channels most). THE number is Spearman;
  Pearson on the same vectors is reported beside it;
- a visualization's path similarity at a layer is its mean similarity to the E exemplars; the
  random baseline at a layer is the mean over R random dataset images of their mean
  similarity to the exemplars (a random image that is also an exemplar, pixel for pixel, is
  not compared with itself); the overall numbers are means over the layers, and a
  visualization is flagged when its overall path similarity is below the random baseline's:
  the network treats it less like the unit's exemplars than it treats arbitrary photos.

Cost: one forward pass per batch of the V + E + R images, stopped at the deepest compared layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from worker.core.probe import capture_activations
from worker.core.trust.correlation import pearson_matrix, spearman_matrix

DEFINITION = (
    "Path similarity (Geirhos et al., ICML 2024): at each compared layer below the unit, each image is "
    "summarized by the spatial mean of every channel, and two images' similarity is the Spearman rank "
    "correlation of these vectors; a visualization's path similarity is its mean similarity to the unit's top "
    "dataset exemplars, averaged over the layers. It is flagged when it is lower than the same number for "
    "random dataset images (the random baseline)."
)

DEFAULT_MAX_LAYERS = 8
MIN_FEATURES = 3  # a rank correlation of two 2-vectors is always +-1: such layers say nothing
# Modules whose output is their input, reshaped at most (dropout: in eval mode): a duplicate of the
# entry before them, pooled.
PASS_THROUGH_TYPES = frozenset(
    {
        "Identity",
        "Flatten",
        "Unflatten",
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "FeatureAlphaDropout",
    }
)
# Containers whose output is, by construction, their last child's output.
PURE_CONTAINER_TYPES = frozenset({"Sequential", "ModuleList", "ModuleDict"})


def feature_count(output_shape: Sequence[int]) -> int:
    """Length of the vector that `pooled` makes of one image's output of this shape (no batch
    dimension, channels first as records and captures give it: [C, H, W], [F, tokens], [F])."""
    shape = list(output_shape)
    return int(shape[0]) if shape else 1


def comparison_layers(
    layers: Sequence[Mapping[str, Any]], unit_layer: str, max_layers: int = DEFAULT_MAX_LAYERS
) -> list[str]:
    """Up to `max_layers` layers to compare on for a unit of `unit_layer`, evenly spaced among
    the model record's layers (plain dicts with `name`, `type`, `output_shape`, in execution
    order) that come before it, the first and the last of them included; [] when none does.

    Skipped, as they would repeat the entry before them: pass-through modules (identity,
    dropout, flatten: PASS_THROUGH_TYPES) and a Sequential/ModuleList/ModuleDict right after
    one of its own descendants (its output IS that child's). Other containers stay: a block's
    output may be its last child's plus a residual (a ViT encoder block, a ConvNeXt block), which
    the names alone cannot tell; where it is the same tensor after all (resnet's BasicBlock and
    its last `relu`), `path_similarity` notices and counts it once. Also skipped: layers with
    fewer than MIN_FEATURES channels/features."""
    names = [str(record["name"]) for record in layers]
    if unit_layer not in names:
        raise KeyError(f"no layer {unit_layer!r} in the model's layers")
    candidates: list[str] = []
    previous: Mapping[str, Any] | None = None
    for record in layers[: names.index(unit_layer)]:
        if not _repeats(record, previous) and feature_count(record.get("output_shape") or []) >= MIN_FEATURES:
            candidates.append(str(record["name"]))
        previous = record
    return evenly_spaced(candidates, max_layers)


def evenly_spaced(items: Sequence[str], count: int) -> list[str]:
    """`count` items spread evenly over `items`, the first and last included (all when fewer)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[-1]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _repeats(record: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    kind = str(record.get("type", ""))
    if kind in PASS_THROUGH_TYPES:
        return True
    if kind in PURE_CONTAINER_TYPES and previous is not None:
        name, before = str(record["name"]).partition("@")[0], str(previous["name"])
        return before.startswith(name + ".") or before.startswith(name + ":")
    return False


def pooled(output: torch.Tensor) -> torch.Tensor:
    """One vector per image from a layer's output [N, F, ...] as `capture_activations` gives it
    (channels first: [N, C, H, W], [N, F, tokens] for a transformer's layer, [N, F]): each
    channel's or feature's mean over the positions (pixels or tokens); [N, F] as it is. float64
    on the CPU."""
    values = output.detach().to(torch.float64)
    if values.dim() == 1:
        values = values[:, None]
    elif values.dim() > 2:
        values = values.flatten(2).mean(dim=2)
    return values.cpu()


@torch.no_grad()
def layer_vectors(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Per layer, the pooled vectors [N, F] of the images `x` (model-input tensors): one forward
    pass per batch of `batch_size` images, stopped at the deepest of `layers`."""
    device = _device(model)
    chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size]
        outputs = capture_activations(model, batch.to(device) if device is not None else batch, layers)
        for layer in layers:
            chunks[layer].append(pooled(outputs[layer]))
    return {layer: torch.cat(parts) for layer, parts in chunks.items()}


@dataclass(frozen=True)
class PathSimilarity:
    layers: list[str]  # the layers compared, execution order (duplicates removed)
    similarity: list[list[float]]  # [V][L]: Spearman, each visualization's mean over the exemplars
    random_similarity: list[float]  # [L]: the random baseline per layer
    pearson: list[list[float]]  # [V][L]: the same with Pearson's correlation
    random_pearson: list[float]  # [L]
    exemplars: int
    random_images: int  # the random images that had an exemplar other than themselves
    duplicates: dict[str, str] = field(default_factory=dict)  # layer -> earlier layer with the same vectors

    @property
    def path_similarity(self) -> list[float]:
        """Per visualization: its similarity averaged over the layers."""
        return [_mean(row) for row in self.similarity]

    @property
    def random_baseline(self) -> float:
        return _mean(self.random_similarity)

    @property
    def flagged(self) -> list[bool]:
        """Per visualization: processed less like the exemplars than random images are."""
        return [value < self.random_baseline for value in self.path_similarity]

    def to_dict(self) -> dict[str, Any]:
        return {
            "definition": DEFINITION,
            "measure": "spearman",
            "layers": list(self.layers),
            "exemplars": self.exemplars,
            "random_images": self.random_images,
            "random_baseline": self.random_baseline,
            "random_baseline_per_layer": list(self.random_similarity),
            "random_baseline_pearson": _mean(self.random_pearson),
            "visualizations": [
                {
                    "path_similarity": overall,
                    "per_layer": list(row),
                    "pearson": _mean(pearson_row),
                    "pearson_per_layer": list(pearson_row),
                    "flagged": flagged,
                }
                for overall, row, pearson_row, flagged in zip(
                    self.path_similarity, self.similarity, self.pearson, self.flagged, strict=True
                )
            ],
            "duplicates": dict(self.duplicates),
        }


def path_similarity(
    model: nn.Module,
    layers: Sequence[str],
    visualizations: torch.Tensor,
    exemplars: torch.Tensor,
    random_images: torch.Tensor,
    batch_size: int = 64,
    random_vectors: dict[str, torch.Tensor] | None = None,
) -> PathSimilarity:
    """Geirhos et al.'s check for V visualizations of one unit: model-input tensors
    `visualizations` [V, ...], the unit's top natural exemplars [E, ...] and random dataset
    images [R, ...], compared on `layers` (names as `inspect_layers` gives them, below the unit;
    see `comparison_layers`). `random_vectors`: `layer_vectors` of the random images on these
    layers, when several units share them (a job's units: the random images are passed through
    the network once per job, not once per unit). Raises ValueError when there is nothing to
    compare: no layer, no exemplar, or no random image that is not the only exemplar."""
    if not layers:
        raise ValueError("no layer to compare on (the unit's layer is the first one)")
    if exemplars.shape[0] == 0:
        raise ValueError("no exemplar to compare with")
    v, e = visualizations.shape[0], exemplars.shape[0]
    layers = list(dict.fromkeys(layers))
    common = torch.promote_types(visualizations.dtype, exemplars.dtype)
    if random_vectors is None:
        common = torch.promote_types(common, random_images.dtype)
        images = torch.cat([visualizations.to(common), exemplars.to(common), random_images.to(common)])
        vectors = layer_vectors(model, images, layers, batch_size)
    else:
        own = layer_vectors(model, torch.cat([visualizations.to(common), exemplars.to(common)]), layers, batch_size)
        vectors = {layer: torch.cat([own[layer], random_vectors[layer]]) for layer in layers}
    kept, duplicates = _distinct(vectors)
    # pairs (random image, exemplar) that are the same picture: not compared
    allowed = ~same_images(random_images, exemplars)  # [R, E]
    counted = allowed.any(dim=1)
    if not bool(counted.any()):
        raise ValueError("no random image with an exemplar other than itself")
    similarity: list[list[float]] = [[] for _ in range(v)]
    pearson: list[list[float]] = [[] for _ in range(v)]
    random_similarity: list[float] = []
    random_pearson: list[float] = []
    for layer in kept:
        rows = vectors[layer]
        vis, ex, rand = rows[:v], rows[v : v + e], rows[v + e :]
        for measure, per_vis, baseline in (
            (spearman_matrix, similarity, random_similarity),
            (pearson_matrix, pearson, random_pearson),
        ):
            for i, value in enumerate(measure(vis, ex).mean(dim=1).tolist()):
                per_vis[i].append(value)
            between = measure(rand, ex)  # [R, E]
            per_random = (between * allowed).sum(dim=1)[counted] / allowed.sum(dim=1)[counted]
            baseline.append(float(per_random.mean()))
    return PathSimilarity(
        layers=kept,
        similarity=similarity,
        random_similarity=random_similarity,
        pearson=pearson,
        random_pearson=random_pearson,
        exemplars=e,
        random_images=int(counted.sum()),
        duplicates=duplicates,
    )


def same_images(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[len(a), len(b)]: whether a[i] and b[j] are the same image, pixel for pixel. Two cheap
    fingerprints (sum and a fixed weighted sum) pick the candidates; torch.equal decides."""
    result = torch.zeros((a.shape[0], b.shape[0]), dtype=torch.bool)
    if a.shape[0] == 0 or b.shape[0] == 0 or a.shape[1:] != b.shape[1:]:
        return result
    flat_a, flat_b = a.detach().flatten(1).to(torch.float64).cpu(), b.detach().flatten(1).to(torch.float64).cpu()
    weights = torch.linspace(1.0, 2.0, flat_a.shape[1], dtype=torch.float64)
    print_a = torch.stack([flat_a.sum(1), flat_a @ weights], dim=1)
    print_b = torch.stack([flat_b.sum(1), flat_b @ weights], dim=1)
    scale = 1e-9 * (1.0 + torch.maximum(print_a.abs().amax(), print_b.abs().amax()))
    close = ((print_a[:, None, :] - print_b[None, :, :]).abs() <= scale).all(dim=2)
    for i, j in close.nonzero().tolist():
        result[i, j] = torch.equal(a[i], b[j].to(a.device, a.dtype))
    return result


def _distinct(vectors: dict[str, torch.Tensor]) -> tuple[list[str], dict[str, str]]:
    """The layers in order, less those whose vectors equal an earlier kept layer's."""
    kept: list[str] = []
    duplicates: dict[str, str] = {}
    for layer, rows in vectors.items():
        same = next((k for k in kept if vectors[k].shape == rows.shape and torch.equal(vectors[k], rows)), None)
        if same is None:
            kept.append(layer)
        else:
            duplicates[layer] = same
    return kept, duplicates


def _device(model: nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")

"""Deconvnet projections (Zeiler & Fergus 2014) and their relatives, batched.

The projection of one kept activation is the backward pass of the network truncated at its
layer, seeded with that activation's value at its position (every other activation of the layer
zero), down to the input, with ReLUs following the method's rule (worker/core/relu_rules.py).
Max-pools route the signal through their recorded switches and convolutions apply their
transposed filters: that is what autograd does, so no layer is reimplemented here.

Many neurons go in one pass: each neuron gets its own copy of its image in the batch and its
own seed, so the projections cannot leak into each other; batches are chunked to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from worker.core.probe import capture_activation, layer_layout, token_box
from worker.core.relu_rules import relu_rule

ProjectionMethod = Literal["deconvnet", "guided_backprop", "saliency"]
RULES = {"deconvnet": "deconvnet", "guided_backprop": "guided_backprop", "saliency": None}


@dataclass(frozen=True)
class Neuron:
    image_index: int
    channel: int
    position: tuple[int, ...]  # (y, x) in the layer's map; (token,) in a tokens layer; () for a vector layer
    activation: float


@torch.no_grad()
def channel_maxima(
    model: nn.Module, batches: Iterable[torch.Tensor], layer: str, check: Callable[[], None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel of `layer`, the strongest activation and where it is: values
    [N, C] and positions [N, C, D] (D = 2 for a feature map, 1 for tokens, 0 for a vector).
    Only these maxima are kept, so memory does not grow with the layer's size; the forward
    pass stops at the layer."""
    values, positions = [], []
    for batch in batches:
        output = capture_activation(model, batch, layer).detach()
        flat = output.flatten(2) if output.dim() > 2 else output[:, :, None]
        best, index = flat.max(dim=2)
        values.append(best.cpu())
        spatial = output.shape[2:]
        coordinates = []
        for size in reversed(spatial):
            coordinates.append(index % size)
            index = index // size
        positions.append(torch.stack(list(reversed(coordinates)), dim=2).cpu() if coordinates else best.new_zeros((*best.shape, 0), dtype=torch.long).cpu())
        if check is not None:
            check()
    return torch.cat(values), torch.cat(positions)


def strongest_channels(values: torch.Tensor, count: int) -> list[int]:
    """The channels with the largest activation anywhere over the images."""
    per_channel = values.amax(dim=0)
    return per_channel.topk(min(count, per_channel.numel())).indices.tolist()


@dataclass(frozen=True)
class ChannelChoice:
    channels: list[int]
    shared: list[int]  # per channel: the most top-k images it shares with one channel chosen before it
    candidates: int  # channels that activate somewhere (max > 0): the ones that competed


def distinct_channels(values: torch.Tensor, count: int, top_k: int) -> ChannelChoice:
    """`count` channels that respond to different images, from values [N, C] (each image's
    strongest activation per channel). The strongest channel first; then, one at a time, the
    channel whose top-k images overlap least with those of the channels already chosen: fewest
    images shared with any one of them, then fewest shared with all of them together, then the
    stronger. Only channels that activate somewhere compete; when fewer than `count` do, the
    strongest of the others fill the rest (a job reports them as dead).

    The strongest channels of a layer often share their top images (the same few high-contrast
    pictures excite them all), and a figure of those says nothing about what differs."""
    images, total = values.shape
    per_channel = values.amax(dim=0)
    order = torch.argsort(per_channel, descending=True, stable=True).tolist()
    rank = {channel: position for position, channel in enumerate(order)}
    k = min(top_k, images)
    member = torch.zeros(total, images)
    member.scatter_(1, values.topk(k, dim=0).indices.T, 1.0)  # member[c, i]: image i is in c's top k
    live = [c for c in order if per_channel[c] > 0]
    chosen: list[int] = []
    shared: list[int] = []
    remaining = list(live)
    while remaining and len(chosen) < count:
        if chosen:
            overlap = member[remaining] @ member[chosen].T  # [remaining, chosen] images in common
            worst, together = overlap.amax(dim=1).tolist(), overlap.sum(dim=1).tolist()
            pick = min(range(len(remaining)), key=lambda i: (worst[i], together[i], rank[remaining[i]]))
            shared.append(int(worst[pick]))
        else:
            pick = 0
            shared.append(0)
        chosen.append(remaining.pop(pick))
    rest = [c for c in order if per_channel[c] <= 0][: count - len(chosen)]
    return ChannelChoice(chosen + rest, shared + [0] * len(rest), len(live))


def top_neurons(values: torch.Tensor, positions: torch.Tensor, channels: Sequence[int], top_k: int) -> list[Neuron]:
    """Per channel, the k images where it is strongest, each at its strongest position
    (channel by channel, strongest first)."""
    neurons = []
    for channel in channels:
        column = values[:, channel]
        for image_index in column.topk(min(top_k, len(column))).indices.tolist():
            position = tuple(int(v) for v in positions[image_index, channel])
            neurons.append(Neuron(image_index, channel, position, float(column[image_index])))
    return neurons


def project(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    neurons: Sequence[Neuron],
    method: ProjectionMethod = "deconvnet",
    batch_size: int = 32,
    check: Callable[[], None] | None = None,
) -> torch.Tensor:
    """The projection of each neuron into input space, [len(neurons), C, H, W], seeded with
    its activation's value. `images` holds the images the neurons' `image_index` refers to."""
    results = []
    for start in range(0, len(neurons), batch_size):
        chunk = neurons[start : start + batch_size]
        x = images[[n.image_index for n in chunk]].detach().clone().requires_grad_(True)
        with torch.enable_grad(), relu_rule(RULES[method]):
            output = capture_activation(model, x, layer)
            seed = torch.zeros_like(output)
            for row, neuron in enumerate(chunk):
                seed[(row, neuron.channel, *neuron.position)] = output[(row, neuron.channel, *neuron.position)].detach()
            (gradient,) = torch.autograd.grad(output, x, grad_outputs=seed)
        results.append(gradient.detach())
        if check is not None:
            check()
    return torch.cat(results) if results else images.new_zeros((0, *images.shape[1:]))


def receptive_fields(
    model: nn.Module,
    example: torch.Tensor,
    layer: str,
    positions: Sequence[tuple[int, ...]],
    samples: int = 2,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[tuple[int, ...], tuple[int, int, int, int]]:
    """For each position of the layer's map, the box [y0, x0, y1, x1) of input pixels that can
    reach it: the support of that neuron's projection with ReLUs passing everything, over a few
    random inputs (so that max-pool switches that point elsewhere on one input are covered by
    another). Works for any architecture; a vector layer's box is the whole image.

    A position [token] of a `tokens` layer whose tokens are image patches (worker/core/probe.py
    `token_grid`) gets its patch, and a class token the whole image: after the first attention
    layer every token can be reached from every pixel, so the support would be the whole image
    for all of them, and the patch is where the token stands in the image."""
    height, width = int(example.shape[2]), int(example.shape[3])
    distinct = sorted(set(positions))
    boxes: dict[tuple[int, ...], tuple[int, int, int, int]] = {}
    if distinct == [()]:
        return {(): (0, 0, height, width)}
    if layer_layout(model, layer) == "tokens":
        with torch.no_grad():
            tokens = int(capture_activation(model, example[:1], layer).shape[2])
        patches = {position: token_box(position[0], tokens, height, width) for position in distinct}
        if all(box is not None for box in patches.values()):
            return patches
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn((samples, *example.shape[1:]), generator=generator).to(example.device, example.dtype)
    per_chunk = max(1, batch_size // samples)
    for start in range(0, len(distinct), per_chunk):
        chunk = distinct[start : start + per_chunk]
        x = noise.repeat(len(chunk), 1, 1, 1).requires_grad_(True)
        with torch.enable_grad(), relu_rule("pass_through"):
            output = capture_activation(model, x, layer)
            seed_tensor = torch.zeros_like(output)
            for row, position in enumerate(chunk):
                seed_tensor[(slice(row * samples, (row + 1) * samples), slice(None), *position)] = 1.0
            (gradient,) = torch.autograd.grad(output, x, grad_outputs=seed_tensor)
        support = gradient.abs().sum(dim=1).view(len(chunk), samples, height, width).sum(dim=1) > 0
        for row, position in enumerate(chunk):
            ys = torch.nonzero(support[row].any(dim=1)).flatten()
            xs = torch.nonzero(support[row].any(dim=0)).flatten()
            if len(ys) == 0:
                boxes[position] = (0, 0, height, width)
            else:
                boxes[position] = (int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1)
    return boxes

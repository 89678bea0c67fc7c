"""Micro-benchmark: images/s of `scan` alone, on pre-decoded tensors already in memory.

No decoding, no storage, no queue: what the index costs on top of the truncated forward pass,
measured beside that forward pass alone (the same capture, no statistics) in the same run.
The figures of issue 15 (a whole build, with reading and fan-out) belong to bench/.

    uv run --frozen python -m worker.core.index.speed [--device cuda] [--images 2048]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch
from torch import nn

from worker.core.index.scan import scan
from worker.core.probe import capture_activations


def scan_images_per_second(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str],
    device: torch.device | str,
    batch_size: int = 256,
    repeats: int = 5,
) -> dict[str, float]:
    """Best of `repeats` for `scan` and for the truncated forward alone over `images` (already
    prepared; moved to `device` first so that no copy is timed), in images/s."""
    device = torch.device(device)
    images = images.to(device)
    batches = [
        (images[i : i + batch_size], torch.arange(i, min(i + batch_size, len(images))), None)
        for i in range(0, len(images), batch_size)
    ]

    def forward_only() -> None:
        with torch.no_grad():
            for batch, _, _ in batches:
                capture_activations(model, batch, list(layers))

    def indexed() -> None:
        stats = scan(model, batches, layers, device)
        for layer in stats.values():
            layer.histogram.sum().item()  # wait for the device

    runs = {"scan": indexed, "forward": forward_only}
    for run in runs.values():
        run()  # warm up: allocator, kernels, lazy initialization
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):  # interleaved, so that a busy spell slows both alike
        for name, run in runs.items():
            best[name] = min(best[name], _timed(run, device))
    return {name: len(images) / seconds for name, seconds in best.items()}


def _timed(run, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    from worker.models.shapes import generate_shapes, load_shapes_cnn, preprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--layers", default="features.11;features.1,features.4,features.6,features.9,features.11")
    args = parser.parse_args(argv)
    model = load_shapes_cnn(device=args.device)
    images = preprocess(generate_shapes(args.images, seed=1)[0])
    for layers in args.layers.split(";"):
        names = layers.split(",")
        rates = scan_images_per_second(model, images, names, args.device, args.batch_size)
        print(json.dumps({"model": "shapes-cnn", "size": 64, "device": args.device, "layers": names, **rates}))


if __name__ == "__main__":
    main()

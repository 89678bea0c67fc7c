"""Deconvnet: 64 neurons (8 channels x top 8 over 256 images) of a mid layer of vgg16.

    uv run python -m bench.deconvnet [--size 96] [--device cpu|cuda] [--baseline-passes 4]

Compares, in one process on the same images and neurons:
- Glassbox: one truncated forward over the images to pick the neurons, then one batched,
  truncated backward for all 64 (in chunks of --batch-size);
- the per-neuron loop: the same forward with the graph kept, then one backward pass per neuron
  over the whole batch (timed for --baseline-passes passes and scaled to 64);
- Captum's NeuronDeconvolution called once per neuron on its image (full network forward).
Prints a markdown table and writes bench/results/deconvnet-<device>.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import torch
import torchvision

from bench import results_dir
from worker.core.deconvnet import channel_maxima, project, strongest_channels, top_neurons
from worker.core.probe import capture_activation
from worker.core.relu_rules import relu_rule

ROOT = Path(__file__).resolve().parent.parent
LAYER = "features.15"  # relu3_3, the last ReLU of vgg16's third block


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--baseline-passes", type=int, default=4)
    args = parser.parse_args()
    device = args.device
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = torch.randn(args.images, 3, args.size, args.size, device=device)

    # Glassbox, end to end: pick the neurons, then project them.
    sync(device)
    started = time.perf_counter()
    chunks = (images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size))
    values, positions = channel_maxima(model, chunks, LAYER)
    neurons = top_neurons(values, positions, strongest_channels(values, 8), 8)
    sync(device)
    selected = time.perf_counter()
    projections = project(model, images, LAYER, neurons, "deconvnet", batch_size=args.batch_size)
    sync(device)
    ours_total = time.perf_counter() - started
    ours_projection = time.perf_counter() - selected

    # The per-neuron loop over the same images: forward once keeping the graph, a backward each.
    x = images.clone().requires_grad_(True)
    sync(device)
    started = time.perf_counter()
    with relu_rule("deconvnet"):
        output = capture_activation(model, x, LAYER)
    sync(device)
    loop_forward = time.perf_counter() - started
    started = time.perf_counter()
    for neuron in neurons[: args.baseline_passes]:
        seed = torch.zeros_like(output)
        seed[(neuron.image_index, neuron.channel, *neuron.position)] = neuron.activation
        (gradient,) = torch.autograd.grad(output, x, grad_outputs=seed, retain_graph=True)
    sync(device)
    per_pass = (time.perf_counter() - started) / args.baseline_passes
    loop_total = loop_forward + per_pass * len(neurons)
    check = gradient[neurons[args.baseline_passes - 1].image_index]
    same = torch.allclose(check, projections[args.baseline_passes - 1], rtol=1e-3, atol=1e-5 * float(check.abs().max()))
    del output, x

    rows = [
        ("Glassbox: select neurons + batched projection", ours_total, 1.0),
        ("  of which the batched projection of 64 neurons", ours_projection, None),
        (f"per-neuron loop (forward kept + 64 backward passes; {args.baseline_passes} timed)", loop_total, loop_total / ours_total),
    ]
    try:
        from captum.attr import NeuronDeconvolution

        explainer = NeuronDeconvolution(model, model.features[15])
        sync(device)
        started = time.perf_counter()
        for neuron in neurons:
            explainer.attribute(images[neuron.image_index : neuron.image_index + 1], neuron_selector=(neuron.channel, *neuron.position))
        sync(device)
        captum_total = time.perf_counter() - started
        rows.append(("Captum NeuronDeconvolution, once per neuron (neurons given)", captum_total, captum_total / ours_projection))
    except ImportError:
        rows.append(("Captum NeuronDeconvolution (captum not installed)", float("nan"), None))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    lines = [
        f"# Deconvnet: 64 neurons of vgg16 {LAYER} over {args.images} images ({args.size} px)",
        "",
        f"Command: `uv run python -m bench.deconvnet --size {args.size} --device {device}` (commit {commit}); device: {name}. "
        "vgg16 with random weights. Ratios are against Glassbox in the same process; the Captum "
        "row is compared with the projection step alone, since Captum is given the neurons.",
        f"The per-neuron loop's projection of neuron {args.baseline_passes - 1} equals Glassbox's: {same}.",
        "",
        "| what | seconds | x Glassbox |",
        "|---|---|---|",
        *[f"| {label} | {seconds:.2f} | {'' if ratio is None else f'{ratio:.1f}x'} |" for label, seconds, ratio in rows],
    ]
    table = "\n".join(lines)
    print(table)
    (results_dir() / f"deconvnet-{device.split(':')[0]}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

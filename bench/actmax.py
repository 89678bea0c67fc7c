"""Activation maximization: what one optimization step costs, against what it must cost.

    uv run python -m bench.actmax [--steps 64] [--warmup 1] [--reps 3] [--device cpu|cuda]

torchvision vgg16 with random weights (seed 0), images rendered at 128 px with the job's
default settings (1/f Fourier parameterization, decorrelated colour, Lucid's standard
transforms, Adam; each step's image resized to vgg16's 224 px input), channel objectives on an
early layer (`features.3`, relu1_2) and a late one (`features.29`, relu5_3). Per layer:

- **job loop**: wall time per step of the job's own loop (`worker.kinds.activation_maximization.compute.prepare`
  + `render`: parameterization, transforms, resize, normalization, truncated forward, objective,
  backward, Adam), for 8 units in one batch;
- **raw fwd+bwd**: a hand-truncated `nn.Sequential(features[:k+1])`, forward and backward of the
  same objective to a fixed input batch of the same shape, in the same process: the floor;
- **full network**: the job loop with the forward pass NOT stopped at the layer (every layer of
  vgg16 runs, the layer's output taken by a hook): what an untruncated library pays.
Goal: job loop / raw <= 1.15.

Then batch scaling: 1, 8 and 32 units in one job, time per step and per unit.

The measurements alternate (job, raw, full, job, raw, full, ...) and report the median over
`--reps`; the first `--warmup` steps of each run are not timed. On a busy CPU, fewer timed steps
(`--steps 4`) give the same per-step figures in less time: the loop does the same work every step.
Writes bench/results/actmax.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

import torch
import torchvision
from torch import nn

from bench import results_dir
from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.core.probe import inspect_layers
from worker.kinds.activation_maximization.compute import prepare
from worker.models.torchvision_models import catalog_record

render_module = importlib.import_module("worker.core.actmax.render")  # the module, not the function
RESULTS = results_dir()
LAYERS = {"early": ("features.3", 3), "late": ("features.29", 29)}


def full_forward_capture(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The layer's output, with the whole network run (no truncation)."""
    captured: list[torch.Tensor] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def job_loop_step_seconds(model, record, layer, units, steps, warmup, device, full=False) -> float:
    params = ActivationMaximizationParams.model_validate(
        {
            "objective": {"type": "channel", "layer": layer, "units": list(range(units))},
            "size": 128,
            "steps": steps + warmup,
        }
    )
    setup = prepare(model, record, params, device=device)
    stamps: list[float] = []

    def on_step(step, total, values):
        sync(device)
        stamps.append(time.perf_counter())

    original = render_module.capture_activation
    if full:
        render_module.capture_activation = full_forward_capture
    try:
        setup.render(model, params, callback=on_step)
    finally:
        render_module.capture_activation = original
    timed = stamps[warmup - 1 :]
    return (timed[-1] - timed[0]) / (len(timed) - 1)


def raw_step_seconds(model, index, units, steps, warmup, device) -> float:
    net = nn.Sequential(*list(model.features.children())[: index + 1])
    x = torch.rand(units, 3, 224, 224, device=device, requires_grad=True)
    rows = torch.arange(units, device=device)
    for _ in range(warmup):
        net(x)[rows, rows].mean(dim=(1, 2)).sum().neg().backward(inputs=[x])
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        net(x)[rows, rows].mean(dim=(1, 2)).sum().neg().backward(inputs=[x])
        x.grad = None
    sync(device)
    return (time.perf_counter() - started) / steps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=64, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--units", type=int, default=8, help="units in the comparison runs")
    parser.add_argument("--scaling", default="1,8,32", help="unit counts for batch scaling")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = args.device
    args.warmup = max(1, args.warmup)
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    record = catalog_record("vgg16")
    record["layers"] = [info.to_dict() for info in inspect_layers(model, torch.zeros(1, 3, 224, 224, device=device))]
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU, {torch.get_num_threads()} threads"

    lines = [
        f"# Activation maximization step cost: vgg16 (random weights), 128 px, {device} ({name})",
        "",
        f"torch {torch.__version__}; {args.steps} timed steps per run after {args.warmup} warm-up, "
        f"median of {args.reps} alternating runs; channel objectives, {args.units} units per batch; "
        f"each 128 px image is resized to vgg16's 224 px input. Load average at start: {os.getloadavg()[0]:.1f}.",
        "",
        "| layer | job loop s/step | raw truncated fwd+bwd s/step | job / raw | full network s/step | full / job |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for label, (layer, index) in LAYERS.items():
        job, raw, full = [], [], []
        for _ in range(args.reps):
            job.append(job_loop_step_seconds(model, record, layer, args.units, args.steps, args.warmup, device))
            raw.append(raw_step_seconds(model, index, args.units, args.steps, args.warmup, device))
            full.append(
                job_loop_step_seconds(model, record, layer, args.units, args.steps, args.warmup, device, full=True)
            )
        j, r, f = statistics.median(job), statistics.median(raw), statistics.median(full)
        line = f"| {label} `{layer}` | {j:.4f} | {r:.4f} | {j / r:.2f}x | {f:.4f} | {f / j:.1f}x |"
        lines.append(line)
        print(line, flush=True)

    scaling = [int(v) for v in args.scaling.split(",") if v]
    lines += [
        "",
        "Batch scaling (the job loop; units rendered in one batched optimization):",
        "",
        "| layer | units | s/step | s/step per unit | per unit vs 1 unit |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(lines[-5:]), flush=True)
    for label, (layer, _) in LAYERS.items():
        single = None
        for units in scaling:
            runs = [
                job_loop_step_seconds(model, record, layer, units, args.steps, args.warmup, device)
                for _ in range(max(1, args.reps - 1))
            ]
            step = statistics.median(runs)
            per_unit = step / units
            single = single or per_unit
            line = f"| {label} `{layer}` | {units} | {step:.4f} | {per_unit:.4f} | {per_unit / single:.2f}x |"
            lines.append(line)
            print(line, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "actmax.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

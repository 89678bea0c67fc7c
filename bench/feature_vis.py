"""Issue 17's figures: MACO against Lucid-style FFT feature visualization, and what the trust
checks cost against the work they check.

    uv run python -m bench.feature_vis [--quick] [--device cpu|cuda] [--only shapes,resnet50,vit]

No service: the activation-maximization job's own code runs in this process
(`worker.kinds.activation_maximization.execute`, the whole job without Redis), as do the
projections (`worker.core.deconvnet.project`) and the randomization check
(`worker.core.trust.randomization.randomization_check`). Three models:

- shapes-cnn (the built-in model, trained) over shapes-val, `features.11`;
- torchvision resnet50, random weights (seed 0), `layer3`;
- torchvision vit_b_16, random weights (seed 0), the MLP hidden layer of its 7th block
  (`encoder.layers.encoder_layer_6.mlp.1`, a [tokens, features] layer whose units are features).
There is no ImageNet offline: for resnet50 and vit_b_16 the reference dataset is shapes-val's
first images, resized to the models' 224 px input by the input contract (ImageNet's mean/std).

Per model, the layer's index over the reference dataset is built first (timed apart; the
service builds an activation index once per dataset and layer, and every job after reads it),
keeping per unit its 8 best images by map mean (see `build_index`: the index's own `top_mean`
keeps one, so path similarity read from it would get 1 exemplar of the 8 it asks for), and the
2-3 units compared are the layer's strongest on that dataset (none dead). MACO's magnitude is
the reference dataset's average spectrum at the rendering size (computed once, as the service
caches it). One small untimed job runs first (`warm_up`: the first optimizer of a process
imports torch._dynamo, ~20 s here, once per worker process). Then:

1. MACO vs FFT: the same channel objective, seed, size and transforms, each parameterization
   with its job default learning rate (maco 0.2, fft 0.05), first at equal steps, then at equal
   time: the method with the cheaper step gets the steps the other runs in the same time, by
   their step times measured alternately (maco, fft, maco, ...: the load of a shared machine
   moves between jobs minutes apart); not run when they are within 10%. Per run: activation
   reached relative to the unit's best dataset image (`ratio_to_dataset_max`), path similarity
   against its random baseline (result.json `trust.path_similarity`), seconds per step
   (`timing.step_seconds`).
2. The trust checks' cost: path similarity's seconds (`trust.path_similarity.seconds`) against
   the job's wall time (goal < 10%); the randomization check (`randomization_check(...,
   real=<the projections>)`) against one projection pass (`project` alone, the same neurons:
   each unit at its strongest position in each of its top 4 dataset images; deconvnet on the
   ReLU networks, saliency on vit_b_16, where deconvnet's ReLU rule is undefined). The check
   makes two projection passes (the randomized model's maps of the neurons and of the control
   neurons) after copying and re-initializing the model: the goal was about one more pass.

Every time is wall time on a possibly shared machine: read the ratios, measured in one process
minutes apart. On the CPU torch runs one thread unless `--threads` says otherwise (THREADS_NOTE). Writes bench/results/feature_vis.md (`--quick`: halved steps and a smaller
dataset, a smoke test).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import publish, results_dir
from bench.__main__ import git_commit
from service.kinds.activation_maximization import DEFAULT_STEPS, ActivationMaximizationParams
from worker.core.actmax.maco import dataset_spectrum
from worker.core.deconvnet import Neuron, channel_maxima, project
from worker.core.imaging import prepare_images
from worker.core.probe import capture_activations, inspect_layers, set_layer_layouts
from worker.core.trust.randomization import (
    modules_below,
    projection_similarity,
    randomization_check,
    randomized_copy,
)
from worker.datasets import ImageSet
from worker.kinds.activation_maximization import execute
from worker.kinds.activation_maximization.compute import Hooks, prepare
from worker.models import shapes
from worker.scan_reader import prepared_batches

DATASET = "shapes-val"
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
EXEMPLARS = 8  # path similarity's default exemplars (service/kinds/trust.py PathSimilaritySpec)
PROJECTION_IMAGES = 4  # per unit: its top dataset images, each projected at the unit's strongest position
STEP_TIMING_STEPS = 3  # timed steps per alternating step-time measurement (after one untimed)
EQUAL_TIME_TOLERANCE = 0.10
THREADS_NOTE = (
    "One torch thread by default (`--threads`): on this 2-core machine shared with other jobs, 2 threads made a "
    "shapes-cnn step 10-20x slower than 1 thread and erratic (0.07 to 0.34 s against 0.011 to 0.018 s, measured "
    "alternately), the threads of each parallel region waiting for each other; the benchmark's workers in "
    "bench/atlas.py run with OMP_NUM_THREADS=1 for the same reason."
)  # step times closer than this: equal steps are already equal time


@dataclass(frozen=True)
class Workload:
    name: str
    layer: str
    units: int  # how many units (the layer's strongest on the dataset)
    steps: int  # full run; --quick halves it
    size: int  # rendering size, px
    images: int  # reference dataset images (shapes-val's first), full run
    quick_images: int
    method: str  # projection method for the randomization check
    what: str  # the model in words

    def describe(self, images: int, steps: int) -> str:
        return (f"{self.what}, `{self.layer}`, channel objective on its {self.units} strongest units over "
                f"{images} shapes-val images; rendered at {self.size} px, {steps} steps; projections: {self.method}")  # fmt: skip


WORKLOADS = [
    Workload(name="shapes", layer="features.11", units=3, steps=64, size=64, images=400, quick_images=400,
             method="deconvnet", what="shapes-cnn (built in, trained; 64 px input)"),
    Workload(name="resnet50", layer="layer3", units=2, steps=32, size=128, images=128, quick_images=48,
             method="deconvnet", what="torchvision resnet50, random weights (seed 0), 224 px input"),
    Workload(name="vit", layer="encoder.layers.encoder_layer_6.mlp.1", units=2, steps=32, size=128, images=128,
             quick_images=48, method="saliency",
             what="torchvision vit_b_16, random weights (seed 0), 224 px input; the MLP hidden layer (GELU) of block 7"),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# pure helpers


def equal_time_steps(steps: int, maco_step: float, fft_step: float) -> tuple[str, int] | None:
    """Which parameterization gets more steps to run as long as the other's `steps`, and how
    many: the one with the cheaper step. None when the step times are within
    EQUAL_TIME_TOLERANCE of each other (equal steps are equal time already)."""
    if maco_step <= 0 or fft_step <= 0:
        raise ValueError("step times must be positive")
    ratio = maco_step / fft_step
    if abs(ratio - 1.0) < EQUAL_TIME_TOLERANCE:
        return None
    if ratio > 1.0:
        return "fft", max(1, round(steps * ratio))
    return "maco", max(1, round(steps / ratio))


def share_at_steps(total: float, render: float, step: float, part: float, steps: int) -> float:
    """`part`'s share of a job that took `total` seconds, `render` of them in its optimization
    at `step` seconds a step, had it run `steps` steps instead (the rest unchanged)."""
    return part / (total - render + step * steps)


def run_figures(document: dict[str, Any], wall: float) -> dict[str, Any]:
    """The numbers row 1 and row 2 read off one job's result.json and its wall time."""
    images = document["images"]
    panel = document["trust"]["path_similarity"]
    ratios = [im["ratio_to_dataset_max"] for im in images]
    paths = [im["path_similarity"] for im in images]
    baselines = [u["random_baseline"] for u in panel.get("units", []) if "random_baseline" in u]
    return {
        "ratio": _mean(ratios),
        "ratios": ratios,
        "path": _mean(paths),
        "baseline": _mean(baselines),
        "flagged": sum(bool(im["path_flagged"]) for im in images),
        "images": len(images),
        "step": document["timing"]["step_seconds"],
        "render": document["timing"]["render_seconds"],
        "path_seconds": panel.get("seconds", float("nan")),
        "wall": wall,
        "steps": document["params"]["steps"],
        "lr": document["params"]["lr"],
    }


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(kept) if kept else float("nan")


# ---------------------------------------------------------------------------------------------
# models, datasets, the index


@dataclass
class Prepared:
    model: nn.Module
    record: dict[str, Any]
    images: ImageSet
    index: Any = None
    index_seconds: float = 0.0
    units: list[int] = field(default_factory=list)
    spectra: dict[int, torch.Tensor] = field(default_factory=dict)
    spectrum_seconds: float = 0.0


@dataclass
class TopByMean:
    """Per channel, the `k` images with the largest map mean, strongest first: values and
    image numbers, [C, k] each (LayerStats.top_mean's fields)."""

    values: torch.Tensor
    images: torch.Tensor


@dataclass
class MeanIndex:
    """The part of an activation index the job reads (`stats.top_mean`), keeping the top k
    images by map mean where worker/core/index keeps only the first (see `build_index`)."""

    top_mean: TopByMean


@dataclass
class InProcessIndex:
    """What the job's `reference_index` hook returns (worker/indexes.py LayerIndex's fields it reads)."""

    stats: MeanIndex
    record: dict[str, Any]


def build_model(name: str, device: str) -> tuple[nn.Module, dict[str, Any]]:
    if name == "shapes":
        model, contract, labels = shapes.load_shapes_cnn(), shapes.SHAPES_INPUT, list(shapes.SHAPES_CLASSES)
    else:
        import torchvision

        torch.manual_seed(0)
        model = {"resnet50": torchvision.models.resnet50, "vit": torchvision.models.vit_b_16}[name](weights=None)
        contract = {"image": {"size": [224, 224], "channels": 3, **IMAGENET}}
        labels = None
    model = model.eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    height, width = contract["image"]["size"]
    layers = inspect_layers(model, torch.zeros(1, 3, height, width, device=device))
    # As worker/models/loader.py does: every capture turns a [tokens, features] layer features first.
    set_layer_layouts(model, {info.name: info.layout for info in layers})
    record = {"id": name, "kind": "image", "input": contract, "layers": [i.to_dict() for i in layers], "labels": labels}
    return model, record


def reference_images(count: int) -> ImageSet:
    pictures, labels = shapes.shapes_val()
    pictures, labels = pictures[:count], labels[:count]
    names = [f"{i:04d}.png" for i in range(len(pictures))]
    return ImageSet(names, lambda indices: [pictures[i] for i in indices], labels=list(map(int, labels)),
                    classes=list(shapes.SHAPES_CLASSES))  # fmt: skip


def build_index(prepared: Prepared, layer: str, device: str, k: int = EXEMPLARS) -> None:
    """The layer's activation index over the reference dataset as the job reads it: per
    channel, the images with the largest map mean. worker/core/index's LayerStats keeps only
    the best one (`top_mean`, k = 1), so a job that reads the index finds one path-similarity
    exemplar where it asked for 8 (trust.py `exemplars_of` takes `top_mean.images[unit, :k]`);
    this keeps `k`, so that the check runs as designed (8 exemplars) at the cost it would have
    with such an index. One forward pass per batch, stopped at the layer, as `scan` does."""
    started = time.perf_counter()
    means, count = [], 0
    for images, _indices, _labels in prepared_batches(prepared.images, 0, len(prepared.images), 64,
                                                      prepared.record["input"]):  # fmt: skip
        output = capture_activations(prepared.model, images.to(device), [layer])[layer]
        means.append((output.flatten(2).mean(dim=2) if output.dim() > 2 else output).float().cpu())
        count += len(images)
    values, images = torch.cat(means).topk(min(k, count), dim=0)  # [k, C]: strongest first
    sync(device)
    prepared.index_seconds = time.perf_counter() - started
    top = TopByMean(values.T.contiguous(), images.T.contiguous())
    prepared.index = InProcessIndex(MeanIndex(top), {"id": f"bench-{layer}", "k": k, "images": count})


def strongest_units(index: InProcessIndex, count: int) -> list[int]:
    return sorted(index.stats.top_mean.values[:, 0].topk(count).indices.tolist())


def spectrum_hook(prepared: Prepared) -> Callable[[str, int], torch.Tensor]:
    """MACO's magnitude: the reference dataset's average spectrum at `size`, computed once."""

    def spectrum(_dataset: str, size: int) -> torch.Tensor:
        if size not in prepared.spectra:
            started = time.perf_counter()
            pictures = (torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1) for p in prepared.images.images)
            prepared.spectra[size] = dataset_spectrum(pictures, size)
            prepared.spectrum_seconds = time.perf_counter() - started
        return prepared.spectra[size]

    return spectrum


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# row 1: MACO vs FFT (and path similarity's share of each job)


def render_job(prepared: Prepared, w: Workload, parameterization: str, steps: int, device: str) -> dict[str, Any]:
    params = ActivationMaximizationParams.model_validate({
        "objective": {"type": "channel", "layer": w.layer, "units": prepared.units},
        "parameterization": parameterization, "steps": steps, "size": w.size, "reference_dataset": DATASET,
    })  # fmt: skip
    hooks = Hooks(
        dataset=lambda _dataset: prepared.images,
        reference_index=lambda _dataset, _layer, _k: prepared.index,
        spectrum=spectrum_hook(prepared),
    )
    if parameterization == "maco":
        hooks.spectrum(DATASET, w.size)  # computed once per dataset and size, as the service caches it
    sync(device)
    started = time.perf_counter()
    execution = execute(prepared.model, prepared.record, params, device=device, hooks=hooks)
    sync(device)
    return run_figures(execution.document, time.perf_counter() - started)


def warm_up(device: str) -> float:
    """One small untimed job on shapes-cnn with every part the timed ones use: the first
    optimizer in a process imports torch._dynamo (~20 s on this CPU) and the first grid PNG
    its drawing code, once per worker process, not per job."""
    started = time.perf_counter()
    w = WORKLOADS[0]
    model, record = build_model(w.name, device)
    prepared = Prepared(model, record, reference_images(64))
    build_index(prepared, w.layer, device)
    prepared.units = strongest_units(prepared.index, 2)
    render_job(prepared, w, "maco", 2, device)
    return time.perf_counter() - started


def step_seconds(prepared: Prepared, w: Workload, device: str, steps: int, reps: int) -> dict[str, float]:
    """Seconds per optimization step of each parameterization, measured alternately (maco,
    fft, maco, ...) in the job's own loop (`prepare` + `render`, as bench/actmax.py times it),
    `steps` timed steps after one untimed, the median over `reps`: the step-time ratio that
    decides the equal-time run, robust to the load changing between the full jobs."""
    found: dict[str, list[float]] = {"maco": [], "fft": []}
    for _ in range(reps):
        for parameterization in found:
            params = ActivationMaximizationParams.model_validate({
                "objective": {"type": "channel", "layer": w.layer, "units": prepared.units},
                "parameterization": parameterization, "steps": steps + 1, "size": w.size,
            })  # fmt: skip
            magnitude = spectrum_hook(prepared)(DATASET, w.size) if parameterization == "maco" else None
            setup = prepare(prepared.model, prepared.record, params, device=device, magnitude=magnitude)
            stamps: list[float] = []

            def on_step(step, total, values, stamps=stamps):
                sync(device)
                stamps.append(time.perf_counter())

            setup.render(prepared.model, params, callback=on_step)
            found[parameterization].append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
    return {name: statistics.median(values) for name, values in found.items()}


# ---------------------------------------------------------------------------------------------
# row 2b: the randomization check against one projection pass


def projection_neurons(prepared: Prepared, layer: str, device: str) -> tuple[torch.Tensor, list[Neuron]]:
    """Each unit at its strongest position in each of its PROJECTION_IMAGES best dataset images."""
    table = prepared.index.stats.top_mean.images
    picks = sorted({int(table[u, j]) for u in prepared.units for j in range(PROJECTION_IMAGES)})
    images = prepare_images(prepared.images.read(picks), prepared.record["input"], device)
    values, positions = channel_maxima(prepared.model, [images], layer)
    neurons = []
    for unit in prepared.units:
        for j in range(PROJECTION_IMAGES):
            row = picks.index(int(table[unit, j]))
            position = tuple(int(v) for v in positions[row, unit])
            neurons.append(Neuron(row, unit, position, float(values[row, unit])))
    return images, neurons


def randomization_figures(prepared: Prepared, w: Workload, device: str, repeats: int) -> dict[str, Any]:
    model, layer = prepared.model, w.layer
    images, neurons = projection_neurons(prepared, layer, device)
    project(model, images, layer, neurons[:1], w.method)  # warm-up, untimed

    def seconds(run) -> tuple[Any, float]:
        sync(device)
        started = time.perf_counter()
        out = run()
        sync(device)
        return out, time.perf_counter() - started

    # Interleaved (pass, check, copy, similarities, pass, check, ...), the best of each: the
    # machine's load changes by the minute, and each ratio should compare like with like.
    times: dict[str, list[float]] = {"project": [], "check": [], "copy": [], "similarity": []}
    for _ in range(repeats):
        real, spent = seconds(lambda: project(model, images, layer, neurons, w.method))
        times["project"].append(spent)
        check, spent = seconds(lambda: randomization_check(model, images, layer, neurons, w.method, seed=0, real=real))  # noqa: B023
        times["check"].append(spent)
        _, spent = seconds(lambda: randomized_copy(model, modules_below(model, images[:1], layer), 0))
        times["copy"].append(spent)
        # The similarities alone: the check's two map_scores calls, on maps of the same shapes.
        randomized = check.randomized_projections
        _, spent = seconds(lambda: projection_similarity(real, randomized, randomized))  # noqa: B023
        times["similarity"].append(spent)
    best = {key: min(values) for key, values in times.items()}
    result = check.to_dict()
    return {
        "neurons": len(neurons),
        "method": w.method,
        **best,
        "modules": len(check.randomized_modules),
        "corrected": result["corrected_rank_correlation"],
        "rank": result["rank_correlation"],
        "control": result["control_rank_correlation"],
        "flagged": result["flagged"],
    }


# ---------------------------------------------------------------------------------------------
# the report


def f3(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def render_report(figures: dict[str, Any], args: argparse.Namespace) -> str:
    command = "uv run python -m bench.feature_vis" + (" --quick" if args.quick else "") + f" --device {args.device}"
    if args.only:
        command += f" --only {args.only}"
    if args.threads != 1:
        command += f" --threads {args.threads}"
    device = figures["device"]
    machine = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    )
    load = lambda triple: " / ".join(f"{v:.1f}" for v in triple)  # noqa: E731
    lines = [
        "# Feature visualization: MACO vs Lucid-style FFT, and the trust checks' cost (issue 17)",
        "",
        f"Command: `{command}`. {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {git_commit()}; {machine}, "
        f"torch {torch.__version__}; load average (1 / 5 / 15 min) {load(figures['load_start'])} at the start and "
        f"{load(figures['load_end'])} at the end (a shared machine: read the ratios); the run took "
        f"{figures['minutes']:.1f} min.",
        "",
        "The job's own code in one process (`worker.kinds.activation_maximization.execute`, no Redis, no HTTP), "
        "channel objectives on the layer's strongest units over the reference dataset, seed 0, the job's default "
        "transforms and learning rates (maco 0.2, fft 0.05); MACO's magnitude is the reference dataset's average "
        "spectrum at the rendering size. Each model's index of the layer is built first (as the service "
        "builds an activation index once per dataset and layer) and every job reads it: dataset maxima and "
        "path-similarity exemplars come from it. It keeps each unit's 8 best images by map mean: worker/core/index's "
        "`top_mean` keeps only the best one, so a job reading a real index today gets 1 path-similarity exemplar "
        "of the 8 it asks for (and a cheaper, noisier check); these figures are the check as specified. One small "
        "untimed job ran first (the first optimizer of a process imports torch._dynamo, ~20 s here, once per "
        "worker process). **resnet50 and vit_b_16 have random weights and there is no ImageNet offline: "
        "their reference dataset is shapes-val drawings (64 px) resized to 224 px**, so their ratios and path "
        "similarities are about a random network on drawings, not a trained one on photos, and their randomization "
        "check compares one random network with another (its similarity numbers mean nothing there; its cost does).",
    ]
    if not device.startswith("cuda"):
        lines += ["", THREADS_NOTE]
    for w in figures["workloads"]:
        entry = figures["runs"][w.name]
        if "error" in entry:
            lines += ["", f"**{w.name}: did not run**: `{entry['error']}`"]
    done = [w for w in figures["workloads"] if "error" not in figures["runs"][w.name]]

    lines += [
        "",
        "## 1. MACO vs FFT at equal steps and at equal time",
        "",
        "ratio: activation reached / the unit's best dataset image (`ratio_to_dataset_max`, mean over the units); "
        "path similarity: Spearman over the layers below the unit vs the unit's top 8 exemplars (mean over the "
        "images), beside the random baseline (random dataset images vs the same exemplars; below it: flagged).",
        "",
        "| model | run | steps | s/step | render s | ratio to dataset max | path similarity | random baseline "
        "| flagged |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in done:
        entry = figures["runs"][w.name]
        for label, run in entry["row1"]:
            lines.append(
                f"| {w.name} | {label} | {run['steps']} | {run['step']:.4f} | {run['render']:.1f} | {f3(run['ratio'])} "
                f"| {f3(run['path'])} | {f3(run['baseline'])} | {run['flagged']}/{run['images']} |"
            )
        if entry["equal_time"] is None:
            lines.append(f"| {w.name} | equal time | | | | step times within {EQUAL_TIME_TOLERANCE:.0%}: "
                         "equal steps are equal time | | | |")  # fmt: skip
    lines += [
        "",
        "s/step above is each job's own (`timing.step_seconds`, all its steps, minutes apart from the other "
        "job's: the load moves it). The step-time ratio below, which set the equal-time run, is measured "
        f"alternately: maco, fft, maco, ... in the job's own loop, {STEP_TIMING_STEPS} timed steps after one "
        f"untimed, median of {figures['repeats']}.",
        "",
        "Ratios (MACO / FFT):",
        "",
        "| model | s/step maco, fft (alternating) | maco / fft step time | ratio, equal steps | ratio, equal time "
        "| path similarity, equal steps | path similarity, equal time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in done:
        entry = figures["runs"][w.name]
        maco, fft = entry["maco"], entry["fft"]
        tm, tf = entry["timed_maco"], entry["timed_fft"]
        alternating = entry["steps_alternating"]
        lines.append(
            f"| {w.name} | {alternating['maco']:.4f}, {alternating['fft']:.4f} "
            f"| {alternating['maco'] / alternating['fft']:.2f}x | {maco['ratio'] / fft['ratio']:.2f}x "
            f"| {tm['ratio'] / tf['ratio']:.2f}x | {f3(maco['path'])} vs {f3(fft['path'])} "
            f"| {f3(tm['path'])} vs {f3(tf['path'])} |"
        )

    lines += [
        "",
        "## 2. What the trust checks cost",
        "",
        "Path similarity (`trust.path_similarity.seconds`: exemplars read from the index, one forward pass of the "
        "visualization, its exemplars and the random images per unit) against the job's wall time, POST-free: "
        "`execute` start to end, the index already built. The last column: the same seconds against the job had it "
        f"run the default {DEFAULT_STEPS} steps (its render time rescaled by its step time, the rest unchanged; "
        "extrapolated, not measured). Goal: under 10%.",
        "",
        f"| model | run | job s | path similarity s | share (goal < 10%) | share at {DEFAULT_STEPS} steps "
        "| index build s (once) | spectrum s (once) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in done:
        entry = figures["runs"][w.name]
        for label, run in entry["row1"]:
            extrapolated = share_at_steps(run["wall"], run["render"], run["step"], run["path_seconds"], DEFAULT_STEPS)
            lines.append(
                f"| {w.name} | {label} | {run['wall']:.1f} | {run['path_seconds']:.2f} "
                f"| **{run['path_seconds'] / run['wall']:.1%}** | {extrapolated:.1%} | {entry['index_seconds']:.1f} "
                f"| {entry['spectrum_seconds']:.2f} |"
            )
    lines += [
        "",
        f"The randomization check (`randomization_check(..., real=<the projections>)`: modules below the layer "
        f"found and re-initialized on a copy, then the randomized model's projections of the neurons and of the "
        f"control neurons, then the similarities) against one projection pass (`project` alone on the same "
        f"neurons: each unit at its strongest position in each of its top {PROJECTION_IMAGES} images); timed "
        f"alternately (pass, check, copy, similarities, pass, ...), best of {figures['repeats']} each. Goal: about one more projection pass (check / pass ~ 1); the check makes two.",
        "",
        "| model | method | neurons | one pass s | check s | **check / pass** | of which: copy s | similarities s "
        "| the two passes s (the rest) | modules re-initialized | corrected rank corr. | flagged |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in done:
        r = figures["runs"][w.name]["randomization"]
        lines.append(
            f"| {w.name} | {r['method']} | {r['neurons']} | {r['project']:.2f} | {r['check']:.2f} "
            f"| **{r['check'] / r['project']:.2f}x** | {r['copy']:.2f} | {r['similarity']:.2f} "
            f"| {r['check'] - r['copy'] - r['similarity']:.2f} | {r['modules']} | {f3(r['corrected'])} "
            f"| {r['flagged']} |"
        )
    lines += ["", "## Setups", ""]
    lines += [f"- {w.name}: {w.describe(figures['images'][w.name], figures['steps'][w.name])}; units "
              f"{figures['runs'][w.name].get('units')}" for w in figures["workloads"]]  # fmt: skip
    lines += ["", "## Reading", ""] + reading(figures, done)
    if args.quick:
        lines += ["", "`--quick`: half the steps and a smaller dataset for the big models: a smoke test, not figures."]
    return "\n".join(lines)


def span(values: list[float], form: str = "{:.0%}") -> str:
    """ "a-b" of the smallest and largest value, one number when they print the same."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def reading(figures: dict[str, Any], done: list[Workload]) -> list[str]:
    """One line per model from its numbers, then the goals across the models."""
    out = []
    for w in done:
        e = figures["runs"][w.name]
        maco, fft, tm, tf, r = e["maco"], e["fft"], e["timed_maco"], e["timed_fft"], e["randomization"]
        step_ratio = e["steps_alternating"]["maco"] / e["steps_alternating"]["fft"]
        shares = [run["path_seconds"] / run["wall"] for _, run in e["row1"]]
        out.append(
            f"- **{w.name}**: at equal steps MACO reached {f3(maco['ratio'])} of the best dataset image against "
            f"FFT's {f3(fft['ratio'])} ({maco['ratio'] / fft['ratio']:.2f}x), at equal time "
            f"{tm['ratio'] / tf['ratio']:.2f}x; a MACO step cost {step_ratio:.2f}x an FFT step. Path similarity "
            f"{f3(maco['path'])} (MACO) vs {f3(fft['path'])} (FFT) against a random baseline of "
            f"{f3(maco['baseline'])}; flagged images {maco['flagged']}/{maco['images']} (MACO) and "
            f"{fft['flagged']}/{fft['images']} (FFT). Path similarity took {span(shares)} of the job; the "
            f"randomization check {r['check'] / r['project']:.2f}x one projection pass."
        )
    if not done:
        return out
    runs = [(w, run) for w in done for _, run in figures["runs"][w.name]["row1"]]
    measured = [run["path_seconds"] / run["wall"] for _, run in runs]
    at_default = [share_at_steps(run["wall"], run["render"], run["step"], run["path_seconds"], DEFAULT_STEPS)
                  for _, run in runs]  # fmt: skip
    checks = [figures["runs"][w.name]["randomization"] for w in done]
    step_ratios = [figures["runs"][w.name]["steps_alternating"] for w in done]
    close = all(0.8 <= t["maco"] / t["fft"] <= 1.25 for t in step_ratios)
    steps_run = [run["steps"] for _, run in runs]
    over = sum(v >= 0.10 for v in at_default)
    default_verdict = f"still over the goal in {over} runs" if over else "under the goal on every model"
    ahead = [w.name for w in done if figures["runs"][w.name]["maco"]["ratio"] > figures["runs"][w.name]["fft"]["ratio"]]
    out += [
        "",
        f"- **MACO vs FFT.** A MACO step cost {span([t['maco'] / t['fft'] for t in step_ratios], '{:.2f}x')} an "
        "FFT step"
        + (
            ": about the same, the network's forward and backward dominate and the parameterization is a "
            "few FFTs of the image, so equal time is nearly equal steps"
            if close
            else ""
        )
        + ". "
        f"At these short budgets ({', '.join(str(figures['steps'][w.name]) for w in done)} steps) and with each "
        f"parameterization's default learning rate, MACO reached more of the best dataset image than FFT on "
        f"{', '.join(ahead) if ahead else 'none of the models'}. A likely reason: MACO keeps the spectrum's "
        "magnitude fixed (here the shapes drawings' average), so its images cannot gain contrast, where much of an "
        "FFT image's early activation comes from. Whether MACO catches up at the default 256 steps, and on "
        "trained deep networks and natural images (Fel et al.'s claim), these runs do not test.",
        f"- **Path similarity's cost: goal < 10% of the job.** Met in {sum(v < 0.10 for v in measured)} of "
        f"{len(measured)} runs as measured ({span(measured, '{:.1%}')}): its cost is fixed (per unit one forward pass of 1 "
        "visualization + 8 exemplars + 16 random images, below the unit) while these jobs ran "
        f"{span(steps_run, '{}')} steps. At the "
        f"default {DEFAULT_STEPS} steps it would be {span(at_default, '{:.1%}')} (extrapolated), {default_verdict}. "
        "The 16 random images are the same for every unit but are passed through the network once per unit: "
        "passing them once per job would cut the check's forward passes from 25 images per unit to 9 per unit "
        "plus 16 once "
        "(worker/kinds/activation_maximization/trust.py `path_similarity_panel`).",
        f"- **The randomization check: goal about one more projection pass.** It cost "
        f"{span([c['check'] / c['project'] for c in checks], '{:.2f}x')} one pass. By construction it makes two "
        "passes (the randomized model's maps of the neurons, and of the control neurons: the same unit and "
        "position in another image, which the chance correction needs), plus the copy and re-initialization "
        f"({span([c['copy'] / c['project'] for c in checks], '{:.2f}x')} of a pass) and the similarities "
        f"(Spearman and SSIM of every pair: {span([c['similarity'] / c['project'] for c in checks], '{:.2f}x')} "
        "of a pass; largest where a pass is cheap). About one more pass is reachable only without the control "
        "pass, giving up the chance correction that keeps a deep unit's receptive-field profile from passing for "
        "weight dependence.",
    ]
    return out


# ---------------------------------------------------------------------------------------------


def run_workload(w: Workload, args: argparse.Namespace, figures: dict[str, Any], say) -> None:
    device = args.device
    steps = max(2, w.steps // 2) if args.quick else w.steps
    count = w.quick_images if args.quick else w.images
    figures["steps"][w.name], figures["images"][w.name] = steps, count
    entry: dict[str, Any] = {}
    figures["runs"][w.name] = entry
    model, record = build_model(w.name, device)
    prepared = Prepared(model, record, reference_images(count))
    build_index(prepared, w.layer, device)
    prepared.units = strongest_units(prepared.index, w.units)
    entry.update(units=prepared.units, index_seconds=prepared.index_seconds)
    say(f"{w.name}: index of {count} images in {prepared.index_seconds:.1f} s; units {prepared.units}")

    maco = render_job(prepared, w, "maco", steps, device)
    say(f"{w.name}: maco {steps} steps: {maco}")
    fft = render_job(prepared, w, "fft", steps, device)
    say(f"{w.name}: fft {steps} steps: {fft}")
    entry.update(maco=maco, fft=fft, spectrum_seconds=prepared.spectrum_seconds)
    rows = [("maco, equal steps", maco), ("fft, equal steps", fft)]
    entry["steps_alternating"] = timing = step_seconds(prepared, w, device, STEP_TIMING_STEPS, args.repeats)
    say(f"{w.name}: s/step measured alternately: {timing}")
    plan = equal_time_steps(steps, timing["maco"], timing["fft"])
    entry["equal_time"] = plan
    entry["timed_maco"], entry["timed_fft"] = maco, fft
    if plan is not None:
        which, more = plan
        extra = render_job(prepared, w, which, more, device)
        say(f"{w.name}: {which} {more} steps (equal time): {extra}")
        entry[f"timed_{which}"] = extra
        rows.append((f"{which}, equal time", extra))
    entry["row1"] = rows
    entry["randomization"] = randomization_figures(prepared, w, device, args.repeats)
    say(f"{w.name}: randomization {entry['randomization']}")
    say(f"{w.name}: ratios maco/fft: equal steps {maco['ratio'] / fft['ratio']:.2f}x, step time "
        f"{maco['step'] / fft['step']:.2f}x; path similarity share {maco['path_seconds'] / maco['wall']:.1%} (maco), "
        f"{fft['path_seconds'] / fft['wall']:.1%} (fft); randomization check / one pass "
        f"{entry['randomization']['check'] / entry['randomization']['project']:.2f}x")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the steps, smaller datasets (a smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(w.name for w in WORKLOADS))
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="alternating step-time runs (median) and projection timings (best of); default 3, quick 2",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads on the CPU (0: torch's default); see THREADS_NOTE"
    )
    args = parser.parse_args()
    if args.threads and not args.device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (2 if args.quick else 3)
    wanted = [w for w in WORKLOADS if not args.only or w.name in args.only.split(",")]
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    figures: dict[str, Any] = {"device": args.device, "load_start": os.getloadavg(), "workloads": wanted,
                               "runs": {}, "steps": {}, "images": {}, "repeats": args.repeats}  # fmt: skip
    say(f"warm-up (untimed): {warm_up(args.device):.1f} s")
    for w in wanted:
        try:
            run_workload(w, args, figures, say)
        except Exception as exc:  # a model that does not work yet is reported, the others still run
            if w.name != "vit":
                raise
            figures["runs"][w.name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            say(f"{w.name} failed: {exc!r}")
    figures["load_end"] = os.getloadavg()
    figures["minutes"] = (time.monotonic() - started) / 60
    publish(render_report(figures, args), results_dir() / "feature_vis.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

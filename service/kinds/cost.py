"""What a job will cost, in seconds, before it runs: the shared half of each kind's cost model.

Each job kind defines its `cost(params, model_record, dataset_records)` next to its params
(service/kinds/<kind>.py). It counts the job's work in units the catalog records give (forward
and backward passes, the activations they compute, optimization steps, model evaluations,
images, charts) and prices them with the per-device `Rates` below. The rates were measured by
`uv run python -m bench.job_costs` (bench/results/job_costs.md lists each default job's
measured time beside this estimate); no GPU has been measured yet, so the GPU estimate is null
until a `--device cuda` run calibrates `GPU`.

An estimate assumes an idle worker that has the model loaded (a first job on a torchvision
model also loads it: see model_inspection's estimate). It is meant to say "a second" or "a
minute" before a user submits, not to schedule: expect it within a factor of about 3 on an
otherwise idle machine.

Torch-free (the API imports it) and HTTP-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

CONTAINER_TYPES = frozenset({"Sequential", "ModuleList", "ModuleDict"})
# A torchvision model no job has loaded has no recorded layers: priced as a typical ImageNet CNN
# (resnet50: 182 recorded layers, ~32 M activations per 224 px image, ~640 per input pixel).
TYPICAL_LAYERS = 180
TYPICAL_ACTIVATIONS_PER_PIXEL = 640
TYPICAL_LARGE_SHARE = 0.8
# A layer output above this many elements per input (1 MiB of float32, more than a core's L2
# cache) costs more per element on a CPU: about 1.5 ns per element of shapes-cnn's small maps,
# 2.5 of resnet50's 224 px ones (forward; see CPU).
LARGE_MAP = 2**18


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work on one device (a worker running one job at a time)."""

    job: float  # every job: pickup, status writes, result.json
    layer_pass: float  # one layer in one forward pass (dispatch: what small models cost)
    activation: float  # one activation element computed in a forward pass, in a map that fits a cache
    large_activation: float  # the same in a map over LARGE_MAP elements
    backward: float  # a forward + backward pass costs this many forward passes
    input_pixel: float  # preparing an input image (decode, resize, normalize), per model-input pixel
    image_file: float  # encoding one image artifact (a PNG, a figure cell)
    render_pixel: float  # activation maximization, per rendered pixel per step (Fourier image, transforms)
    step: float  # one optimization step's fixed part (optimizer, transform sampling)
    chart: float  # one matplotlib chart (tabular attribution)
    tabular_job: float  # tabular attribution's fixed part: top rows, the input that maximizes, the table
    tabular_row: float  # per explained row: encoding, bookkeeping, the CSV and result rows
    evaluation: float  # tabular attribution, per model evaluation: building its input (masks, paths), its share of a batch
    load_byte: float  # loading a model, per byte of weights
    torchvision_load: float  # building a torchvision architecture (random or cached weights)


# Measured on the 2-core CPU of bench/results/job_costs.md (torch's 2 threads, the benchmark's
# processes given the CPU: an idle machine). A CPU busy with other work is slower by more than
# its share: torch's threads wait on each other. The shared test box ran the same jobs 5-20x
# slower under a load of 8.
CPU = Rates(
    job=0.05,
    layer_pass=40e-6,
    activation=1.5e-9,
    large_activation=2.5e-9,
    backward=2.5,
    input_pixel=100e-9,
    image_file=1e-3,
    render_pixel=0.2e-6,
    step=2.5e-3,
    chart=0.04,
    tabular_job=0.05,
    tabular_row=0.1e-3,
    evaluation=0.2e-6,
    load_byte=2e-9,
    torchvision_load=0.8,
)
# No GPU measured yet: `uv run python -m bench.job_costs --device cuda` gives the figures to set.
GPU: Rates | None = None


class DeviceSeconds(BaseModel):
    cpu: float = Field(description="Seconds on a 2-core CPU worker.")
    gpu: float | None = Field(description="Seconds on a GPU worker; null where no GPU has been measured.")


class JobEstimate(BaseModel):
    kind: str
    seconds: DeviceSeconds = Field(description="Expected running time on an idle worker with the model loaded.")
    basis: str = Field(description="What the estimate counts, and what it assumes.")


@dataclass(frozen=True)
class Estimate:
    seconds: DeviceSeconds
    basis: str


def estimate(work: Callable[[Rates], float], basis: str) -> Estimate:
    """Price the same work on every device that has rates."""
    gpu = None if GPU is None else round(work(GPU), 3)
    return Estimate(DeviceSeconds(cpu=round(work(CPU), 3), gpu=gpu), basis + GPU_NOTE * (GPU is None))


GPU_NOTE = " No GPU measured yet (gpu: null)."


@dataclass(frozen=True)
class Network:
    """The part of a model one input's forward pass runs: how many layers, how many activations."""

    layers: int
    activations: int  # in all the layers run
    large: int  # of which in outputs over LARGE_MAP elements
    recorded: bool  # False: the model's layers are not known yet, a typical CNN is assumed

    def forward(self, rates: Rates, inputs: int, batch_size: int = 32) -> float:
        passes = math.ceil(inputs / max(1, batch_size)) if inputs else 0
        per_input = (self.activations - self.large) * rates.activation + self.large * rates.large_activation
        return passes * self.layers * rates.layer_pass + inputs * per_input

    def backward(self, rates: Rates, inputs: int, batch_size: int = 32) -> float:
        """A forward and a backward pass (to the input) of `inputs` inputs."""
        return rates.backward * self.forward(rates, inputs, batch_size)

    def describe(self) -> str:
        if not self.recorded:
            return f"layers not recorded yet (a model_inspection job lists them): a typical CNN assumed, {self.activations:,} activations"
        return f"{self.layers} layers, {self.activations:,} activations per input"


def network(record: Mapping[str, Any], upto: str | None = None) -> Network:
    """The layers a forward pass stopping after `upto` (None: the whole model) runs, counted from
    the recorded layers; a container's output repeats its last child's, so only leaves count."""
    layers = record.get("layers") or []
    if not layers:
        activations = TYPICAL_ACTIVATIONS_PER_PIXEL * input_pixels(record)
        return Network(TYPICAL_LAYERS, activations, int(TYPICAL_LARGE_SHARE * activations), recorded=False)
    parents = set()
    for entry in layers:
        parts = entry["name"].split("@")[0].split(":")[0].split(".")
        parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    count = activations = large = 0
    for entry in layers:
        base = entry["name"].split("@")[0]
        if base not in parents and entry.get("type") not in CONTAINER_TYPES:
            size = math.prod(int(v) for v in entry.get("output_shape") or [1])
            count += 1
            activations += size
            large += size if size > LARGE_MAP else 0
        if entry["name"] == upto:
            break
    return Network(max(1, count), activations, large, recorded=True)


def input_pixels(record: Mapping[str, Any]) -> int:
    """Pixels of one model input (an image model's input size; 1 for other models)."""
    image = (record.get("input") or {}).get("image") or {}
    height, width = image.get("size") or [1, 1]
    return int(height) * int(width)

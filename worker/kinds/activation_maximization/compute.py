"""The PyTorch half of an activation-maximization job: build the optimization from the params,
render the images, measure them, and find each unit's strongest image in a reference dataset.

`prepare` is separate from `render_images` so that bench/actmax.py can time the job's own
render loop without the measuring around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.kinds.activation_maximization import ActivationMaximizationParams
from service.kinds.actmax_objective import resolve_objective
from service.validation import InvalidRequest
from worker.context import JobFailed
from worker.core.actmax import (
    Compose,
    DeadObjective,
    Diversity,
    ImageParam,
    ModelInput,
    Objective,
    Regularizer,
    RenderResult,
    make_objective,
    make_param,
    make_regularizers,
    make_transforms,
    measure_images,
    render,
    unit_maxima,
)
from worker.core.actmax.accentuation import Closeness, start_from_seed
from worker.core.actmax.render import NonFiniteObjective
from worker.core.imaging import prepare_images
from worker.core.probe import capture_activations
from worker.datasets import ImageSet
from worker.kinds.activation_maximization.seeding import Seed, load_seed
from worker.kinds.activation_maximization.trust import CHECKS, path_similarity_panel

DATASET_BATCH = 64  # reference-dataset images per forward pass
ROBUST_SAMPLES = 8  # random transforms each finished image is measured under (robust_activation)


@dataclass
class Setup:
    """The parts of one optimization, built from the job's params (see `render`)."""

    resolved: dict[str, Any]  # the objective with its layer, units and position resolved
    objective: Objective
    param: ImageParam
    to_input: ModelInput
    transforms: Compose
    transform_specs: list[dict[str, Any]]
    regularizers: list[Regularizer]
    diversity: Diversity | None
    generator: torch.Generator
    max_frequency: float | None
    closeness: Closeness | None = None  # feature accentuation's term (with `init`)
    seed: Seed | None = None
    seed_image: torch.Tensor | None = None  # [1, 3, size, size]: where the images started (the seed as rendered)
    transparency: bool = False  # accumulate the transparency map (maco)
    spectrum_source: str | None = None  # maco: the dataset its magnitude came from (None: the 1/f prior)

    def render(self, model: torch.nn.Module, params: ActivationMaximizationParams, **kwargs: Any) -> RenderResult:
        return render(
            model,
            self.objective,
            self.param,
            to_input=self.to_input,
            transforms=self.transforms,
            generator=self.generator,
            steps=kwargs.pop("steps", params.steps),
            lr=params.lr,
            optimizer=params.optimizer,
            regularizers=self.regularizers,
            diversity=self.diversity,
            thresholds=params.thresholds,
            closeness=self.closeness,
            transparency=self.transparency,
            **kwargs,
        )


@dataclass
class Rendering:
    """What the optimization made and how the model responds to it; the rest of the job reads
    only this."""

    setup: Setup
    labels: list[str]  # the model's class labels ([] when it has none)
    result: RenderResult  # images, per-step history, dead flags, snapshots, timings
    images: np.ndarray  # [N, 3, H, W] float32 in [0, 1]
    measured: dict[str, Any]  # measure_images: activation, robust_activation, top_unit, is_top_unit
    dataset_max: list[float | None]  # per distinct unit (objective.unit_ids): best reference image value
    dataset_max_image: list[str | None]  # ... and that image's name (None without a reference dataset)
    reference_index: dict[str, Any] | None  # the activation index dataset_max was read from, if one was
    snapshot_steps: list[int]
    snapshots: np.ndarray | None  # [steps, N, 3, H, W]: the images at `params.thresholds`
    accentuation: dict[str, Any] | None = (
        None  # with `init`: the seed, the term, per image the seed's activation and distance
    )
    transparency: np.ndarray | None = None  # maco: [N, H, W] in [0, 1]
    trust: dict[str, Any] | None = None  # the trust panel's new checks (path similarity)

    def differences(self) -> tuple[np.ndarray, list[float]]:
        """Accentuation's change as a picture: [N, 3, H, W] in [0, 1], 0.5 + 0.5 x (image - seed)
        / the image's largest |change| (faint edits stay visible); and those largest changes."""
        changes = self.images - self.setup.seed_image.numpy()[0][None]
        scales = [float(np.abs(change).max()) for change in changes]
        shown = [0.5 + 0.5 * c / s if s > 0 else np.full_like(c, 0.5) for c, s in zip(changes, scales)]
        return np.stack(shown).astype(np.float32), scales


def prepare(
    model: torch.nn.Module,
    record: dict[str, Any],
    params: ActivationMaximizationParams,
    *,
    device: str,
    seed: Seed | None = None,
    magnitude: torch.Tensor | None = None,
) -> Setup:
    """The optimization's parts. `seed`: feature accentuation's start (params.init, read);
    `magnitude`: MACO's fixed spectrum magnitude (None: the 1/f prior)."""
    resolved = _resolve(params, record)
    generator = torch.Generator().manual_seed(params.seed)
    objective = make_objective(
        resolved["type"],
        resolved["layer"],
        resolved["units"],
        images_per_unit=params.images_per_unit,
        position=resolved["position"],
        vector=resolved["vector"],
        softmax_weight=params.objective.softmax_weight,
        softmax_start=params.objective.softmax_start,
    )
    to_input = ModelInput(record["input"], device)
    # An image rendered larger than the model's input is band-limited to what the model sees.
    ratio = max(to_input.size) / params.size
    max_frequency = 0.5 * ratio if ratio < 1 else None
    maco = {"magnitude": magnitude} if params.parameterization == "maco" else {}
    param = make_param(
        params.parameterization,
        objective.n,
        params.size,
        generator=generator,
        decorrelate=params.decorrelate,
        device=device,
        sd=params.init_sd,
        max_frequency=max_frequency,
        **maco,
    )
    closeness = seed_image = None
    if seed is not None:
        start_from_seed(param, seed.tensor(params.size, device))
        with torch.no_grad():
            seed_image = param()[:1].detach()  # the seed as the parameterization renders it
        spec = params.accentuation
        closeness = Closeness(
            (spec.layer if spec and spec.layer else None) or resolved["layer"],
            seed_image,
            weight=spec.weight if spec else None,
            objective_weight=spec.objective_weight if spec else 1.0,
        )
    transform_specs = params.transform_specs()
    return Setup(
        resolved=resolved,
        objective=objective,
        param=param,
        to_input=to_input,
        transforms=make_transforms(transform_specs),
        transform_specs=transform_specs,
        regularizers=make_regularizers(**params.regularizers.model_dump()),
        diversity=Diversity(params.diversity, objective.groups()) if params.diversity > 0 else None,
        generator=generator,
        max_frequency=max_frequency,
        closeness=closeness,
        seed=seed,
        seed_image=seed_image.cpu() if seed_image is not None else None,
        transparency=params.parameterization == "maco",
        spectrum_source=params.spectrum_source() if magnitude is not None else None,
    )


@dataclass
class Hooks:
    """What a rendering asks of the job around it (all optional: a test renders without)."""

    on_step: Callable[[int, int, list[float] | None], None] | None = None  # (step, steps, activations)
    on_phase: Callable[[float, str], None] | None = None  # (fraction, message)
    check: Callable[[], None] | None = None  # raises to stop (cancel, time limit)
    dataset: Callable[[str], ImageSet] | None = None  # a reference dataset's images
    reference_index: Callable[[str, str, int], Any] | None = None  # (dataset, layer, k) -> its activation index
    spectrum: Callable[[str, int], torch.Tensor] | None = None  # (dataset, size) -> MACO's magnitude


def render_images(
    model: torch.nn.Module,
    record: dict[str, Any],
    params: ActivationMaximizationParams,
    *,
    device: str,
    hooks: Hooks | None = None,
) -> Rendering:
    """`model` loaded on `device`, `record` its catalog record (input contract, labels, layers)."""
    hooks = hooks or Hooks()
    on_step, check, dataset, reference_index = hooks.on_step, hooks.check, hooks.dataset, hooks.reference_index
    phase = hooks.on_phase or (lambda fraction, message: None)
    seed = load_seed(params, dataset)
    source = params.spectrum_source()
    magnitude = None
    if source is not None:
        if hooks.spectrum is None:
            raise JobFailed("invalid-params", "No datasets here", "spectrum_dataset needs a dataset loader")
        magnitude = hooks.spectrum(source, params.size)
    setup = prepare(model, record, params, device=device, seed=seed, magnitude=magnitude)
    resolved, objective = setup.resolved, setup.objective

    phase(0.05, f"rendering {objective.n} images")
    try:
        result = setup.render(model, params, callback=on_step)
    except DeadObjective as exc:
        raise JobFailed(
            "dead-objective",
            "The objective is dead on random input",
            f"the gradient of {resolved['type']} {resolved['units'] or ''} at layer {resolved['layer']!r} "
            f"stayed exactly zero for the first {exc.steps} steps (e.g. a ReLU unit that never fires "
            "on the starting images): there is nothing to ascend. Pick another unit or layer "
            "(a pre-activation layer such as the convolution before the ReLU often works).",
        ) from exc
    except NonFiniteObjective as exc:
        raise JobFailed("objective-not-finite", "The objective became NaN or infinite", str(exc)) from exc

    phase(0.9, "measuring the images")
    measured = measure_images(
        model,
        objective,
        result.images,
        to_input=setup.to_input,
        transforms=setup.transforms,
        generator=setup.generator,
        robust_samples=ROBUST_SAMPLES,
    )
    dataset_max: list[float | None] = [None] * len(objective.unit_ids)
    dataset_max_image: list[str | None] = [None] * len(objective.unit_ids)
    index_used = None
    if params.reference_dataset and reference_index is not None and _indexable(setup.objective, record):
        dataset_max, dataset_max_image, index_used = _indexed_maxima(setup.objective, params, dataset, reference_index)
    elif params.reference_dataset:
        dataset_max, dataset_max_image = _reference_maxima(model, record, params, setup, device, check, dataset)
    indexed = params.reference_dataset and reference_index is not None and _indexable(setup.objective, record)
    phase(0.95, "checking the images' path through the network")
    panel = path_similarity_panel(
        model, record, params, objective, setup.to_input, result.images.numpy(), device=device, dataset=dataset,
        index=(lambda k: reference_index(params.reference_dataset, objective.layer, k)) if indexed else None,
        check=check,
    )  # fmt: skip
    steps = sorted(result.snapshots)
    accentuation = _accentuation_numbers(model, setup, result.images) if setup.closeness is not None else None
    return Rendering(
        setup=setup,
        labels=record.get("labels") or [],
        result=result,
        images=result.images.numpy().astype(np.float32),
        measured=measured,
        dataset_max=dataset_max,
        dataset_max_image=dataset_max_image,
        reference_index=index_used,
        snapshot_steps=steps,
        snapshots=np.stack([result.snapshots[s].numpy() for s in steps]) if steps else None,
        accentuation=accentuation,
        trust={"checks": CHECKS, "path_similarity": panel},
        transparency=result.transparency.numpy().astype(np.float32) if result.transparency is not None else None,
    )


@torch.no_grad()
def _accentuation_numbers(model: torch.nn.Module, setup: Setup, images: torch.Tensor) -> dict[str, Any]:
    """The seed's own value of each image's objective, and each delivered image's relative
    distance to the seed at the closeness layer (no transforms: the images as delivered)."""
    closeness, objective = setup.closeness, setup.objective
    device = setup.seed_image.device if setup.seed_image is not None else images.device
    device = next((p.device for p in model.parameters()), device)
    seed = closeness.seed.to(device).expand(objective.n, -1, -1, -1)
    seed_acts = capture_activations(model, setup.to_input(seed), [objective.layer, closeness.layer])
    acts = capture_activations(model, setup.to_input(images.to(device)), [objective.layer, closeness.layer])
    distance = closeness.distance(acts[closeness.layer], seed_acts[closeness.layer])
    return {
        "seed": setup.seed.source,
        **closeness.describe(),
        "seed_activation": objective.value(seed_acts[objective.layer]).cpu().tolist(),
        "distance": distance.cpu().tolist(),
        "definition": "Feature accentuation (Hamblin et al. 2024): the images start from the seed and maximize "
        "objective_weight x objective - weight x ||a(x) - a(seed)|| / ||a(seed)||, a = the activations of `layer`, "
        "under the same random transforms. seed_activation: the objective on the seed; distance: that relative "
        "distance for the delivered image.",
    }


def _resolve(params: ActivationMaximizationParams, record: dict[str, Any]) -> dict[str, Any]:
    """The submit-time resolution again, on the record as loaded; its errors become job failures."""
    try:
        resolved = resolve_objective(params, record)
    except InvalidRequest as exc:
        raise JobFailed("invalid-params", "Invalid objective", exc.detail) from exc
    if resolved is None:
        raise JobFailed("model-invalid", "The model's layers are unknown", "inspection recorded no layers")
    if "image" not in (record.get("input") or {}):
        raise JobFailed("invalid-params", "Not an image model", f"{record['id']!r} has no image input contract")
    return resolved


def _indexable(objective, record: dict[str, Any]) -> bool:
    """Objectives whose score on an image the activation index keeps the best of: a map's mean
    (channel, class; a vector layer's value is its own mean), or a neuron of a vector layer."""
    shape = next((e["output_shape"] for e in record.get("layers") or [] if e["name"] == objective.layer), None)
    if shape is None:
        return False
    return objective.type in ("channel", "class") or (objective.type == "neuron" and len(shape) == 1)


def _indexed_maxima(objective, params, dataset, reference_index) -> tuple[list[float], list[str], dict[str, Any]]:
    """dataset_max from the layer's activation index over the reference dataset (read, or built
    now and kept for later jobs): its best image by the map's mean, per unit."""
    found = reference_index(params.reference_dataset, objective.layer, 1)
    best = found.stats.top_mean
    names = dataset(params.reference_dataset).names
    values = [float(best.values[unit, 0]) for unit in objective.unit_ids]
    images = [names[int(best.images[unit, 0])] for unit in objective.unit_ids]
    # The same for every job that reads this index (identical jobs, identical result.json).
    used = {"id": found.record["id"], "k": found.record["k"], "images": found.record["images"]}
    return values, images, used


def _reference_maxima(
    model: torch.nn.Module,
    record: dict[str, Any],
    params: ActivationMaximizationParams,
    setup: Setup,
    device: str,
    check: Callable[[], None] | None,
    dataset: Callable[[str], ImageSet] | None,
) -> tuple[list[float], list[str]]:
    """Each unit's strongest value over the reference dataset and the image where it is reached:
    the yardstick that says whether a rendered image beats real ones."""
    if dataset is None:
        raise JobFailed("invalid-params", "No datasets here", "reference_dataset needs a dataset loader")
    image_set = dataset(params.reference_dataset)
    if not image_set.images:
        raise JobFailed("invalid-params", "The reference dataset is empty", params.reference_dataset)

    def batches():
        for start in range(0, len(image_set.images), DATASET_BATCH):
            if check is not None:
                check()
            yield prepare_images(image_set.images[start : start + DATASET_BATCH], record["input"], device)

    maxima, where = unit_maxima(model, setup.objective, batches())
    return maxima, [image_set.names[i] for i in where]

"""`activation_maximization`: the image a neuron wants to see, rendered from random pixels.

Olah et al. 2017 (Distill, "Feature Visualization") / Lucid's optvis: a 1/f-scaled Fourier
parameterization with decorrelated colour, random transforms each step, Adam; Yosinski et al.
2015's regularizers (L2 decay, blur every n steps, norm/contribution clipping) are available.

Defaults (the issue's contract: 128 px, 256 steps, Adam lr 0.05, fft, decorrelated colour,
Lucid's standard transforms, seed 0) plus two of this service's own, tuned so that every class
of shapes-cnn rendered with the defaults beats its strongest shapes-val example and is
classified as itself (tests/e2e/test_actmax_jobs.py): `init_sd` 0.2 (Lucid starts at 0.01: nearly
flat grey, on which max-pooling networks stall) and, for class objectives, a log-softmax term
of weight 6 over the second half of the steps (the logit alone lets classes that share features
with it, such as shapes-cnn's red circle, rise with it and win).

Images are rendered at `size` and resized, every step, to the model's input size (bilinear,
antialiased when shrinking) before the forward pass: positions are those of the model's
recorded layers, and the reported activations are those of the delivered images resized as any
input would be. Above the model's input size, the Fourier parameterization is band-limited to
the frequencies the model can see.

This module is imported by the API: no torch here. It holds the params model, the limits, the
cost estimate and the kind; the objective's resolution against the model's record (the
submit-time check) is in `service.kinds.actmax_objective`, the random transforms' specs in
`service.kinds.actmax_transforms`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from service.jobspec import DatasetUse, JobKind
from service.kinds.actmax_objective import check_activation_maximization, default_class_layer
from service.kinds.actmax_seed import AccentuationSpec, InitImage
from service.kinds.actmax_transforms import TransformSpec, standard_transforms
from service.kinds.cost import Estimate, Rates, estimate, input_pixels, network
from service.kinds.trust import PathSimilaritySpec

# The limits' defaults. A deployment sets its own in Settings (GLASSBOX_ACTMAX_MAX_SIZE, ...): the
# API validates params with the settings in pydantic's validation context (see `limits`), and a
# worker re-validates with its own, so both read the same configuration.
MAX_SIZE = 512  # rendered image side, px
MAX_STEPS = 4096  # optimization steps
MAX_UNITS = 64  # units rendered in one job
MAX_IMAGES_PER_UNIT = 16
MAX_IMAGES = 128  # units x images_per_unit: the optimization's batch
MAX_THRESHOLDS = 32  # snapshot steps

# Regularizers that edit the image in place (its magnitude): MACO refuses them
# (worker/core/actmax/maco.py says why; tests check the two lists agree).
MACO_UNSUPPORTED_REGULARIZERS = ("l2", "blur_every", "clip_norm_percentile", "clip_contribution_percentile")

DEFAULT_SIZE = 128
DEFAULT_LR = 0.05
DEFAULT_MACO_LR = 0.2
DEFAULT_STEPS = 256
DEFAULT_INIT_SD = 0.2
DEFAULT_SOFTMAX_WEIGHT = 6.0
DEFAULT_SOFTMAX_START = 0.5


def limit(info: ValidationInfo, name: str) -> int:
    """A limit from the Settings in the validation context (`{"settings": ...}`), else its default."""
    settings = (info.context or {}).get("settings") if info is not None else None
    if settings is not None:
        return int(getattr(settings, f"actmax_{name.lower()}"))
    return int(globals()[name])


def _limit_error(field: str, value: int, limit: int, env: str) -> ValueError:
    return ValueError(f"{field} {value} is above the limit of {limit} (GLASSBOX_ACTMAX_{env})")


class ObjectiveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["neuron", "channel", "layer", "class", "direction"] = Field(
        description="neuron: one channel at one spatial position (the centre by default); channel: "
        "the mean of a feature map; layer: DeepDream, the mean squared activation of the whole layer; "
        "class: a logit; direction: the dot product of the layer's channel vector with `vector`."
    )
    layer: str | None = Field(
        default=None,
        description="A layer name as listed by GET /v1/models/{id}. Required except for `class`, "
        "where it defaults to the model's last layer.",
    )
    units: list[int | str] = Field(
        default_factory=list,
        description="Channels (neuron, channel) or classes (class: indices or label names). Several "
        "units render in one batched optimization, one image each (times images_per_unit). Not used "
        "by layer and direction.",
    )
    position: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=2,
        description="[y, x] in the layer's feature map, or [token] in a `tokens` layer (a transformer's), for "
        "neuron (default: the centre; a transformer's centre patch token) and direction (default: the mean "
        "over all positions).",
    )
    vector: list[float] | None = Field(
        default=None, min_length=1, description="direction: one weight per channel of the layer."
    )
    softmax_weight: float = Field(
        default=DEFAULT_SOFTMAX_WEIGHT,
        ge=0.0,
        le=1000.0,
        description="class only: weight of the class's log-softmax, maximized with the logit from "
        "`softmax_start` on. Where other logits rise with the class's (they share features), it "
        "pushes them down, so that the rendered image is classified as the class. 0: the logit alone.",
    )
    softmax_start: float = Field(
        default=DEFAULT_SOFTMAX_START,
        ge=0.0,
        le=1.0,
        description="class only: the fraction of the steps after which the log-softmax term joins "
        "(before it, the logit alone rises freely).",
    )

    @field_validator("units")
    @classmethod
    def _units_limit(cls, units: list[int | str], info: ValidationInfo) -> list[int | str]:
        if len(units) > (most := limit(info, "MAX_UNITS")):
            raise _limit_error("the number of units", len(units), most, "MAX_UNITS")
        return units

    @model_validator(mode="after")
    def _consistent(self) -> ObjectiveSpec:
        kind = self.type
        if kind != "class" and not self.layer:
            raise ValueError(f"a {kind} objective needs `layer`")
        if kind in ("neuron", "channel", "class"):
            if not self.units:
                raise ValueError(f"a {kind} objective needs `units` (one or more)")
            if kind != "class" and any(isinstance(u, str) for u in self.units):
                raise ValueError("units are channel indices; label names are only for class objectives")
        elif self.units:
            raise ValueError(f"a {kind} objective has no units; use images_per_unit for several images")
        if self.position is not None and kind not in ("neuron", "direction"):
            raise ValueError("`position` is only for neuron and direction objectives")
        if (self.vector is not None) != (kind == "direction"):
            raise ValueError("`vector` is required for a direction objective and only for it")
        return self


class RegularizerSpec(BaseModel):
    """Yosinski et al. 2015's regularizers (all off by default: the Fourier parameterization,
    colour decorrelation and transforms already keep images natural, as in Lucid)."""

    model_config = ConfigDict(extra="forbid")

    l2: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Decay: the image moves this fraction towards grey each step."
    )
    blur_every: int = Field(default=0, ge=0, description="Gaussian blur of the image every n steps (0: never).")
    blur_sigma: float = Field(default=0.5, gt=0.0, le=10.0, description="The blur's sigma, px.")
    clip_norm_percentile: float = Field(
        default=0.0, ge=0.0, lt=100.0, description="Each step, pixels whose norm is below this percentile become grey."
    )
    clip_contribution_percentile: float = Field(
        default=0.0,
        ge=0.0,
        lt=100.0,
        description="Each step, pixels whose contribution |x . grad| is below this percentile become grey.",
    )
    tv: float = Field(default=0.0, ge=0.0, description="Weight of a total-variation penalty (mean |dx| + |dy|).")


class ActivationMaximizationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: ObjectiveSpec
    images_per_unit: int = Field(default=1, ge=1, description="Images rendered per unit (see `diversity`).")
    diversity: float = Field(
        default=0.0,
        ge=0.0,
        description="Weight of a term pushing the images of one unit apart (Lucid's diversity: cosine "
        "similarity of the layer's Gram matrices). Try 1e-2..1 with images_per_unit > 1.",
    )
    size: int = Field(
        default=DEFAULT_SIZE,
        ge=8,
        description="Side of the rendered images, px. Each step the transformed image is resized to "
        "the model's input size (so neuron positions are those listed for the model).",
    )
    steps: int = Field(default=DEFAULT_STEPS, ge=1, description="Optimization steps.")
    lr: float = Field(
        default=None,
        gt=0.0,
        le=100.0,
        description="Learning rate. Default 0.05 (fft, pixel) or 0.2 (maco: a phase moves slower than a "
        "spectrum; on shapes-cnn maco at 0.05 rises about half as far in 32 steps).",
        json_schema_extra={"default": 0.05},
    )
    optimizer: Literal["adam", "sgd"] = "adam"
    parameterization: Literal["fft", "pixel", "maco"] = Field(
        default="fft",
        description="fft: a 1/f-scaled Fourier basis (Olah et al.); pixel: plain pixels; maco: only the "
        "phase of the spectrum is optimized, its magnitude fixed to natural images' (Fel et al. 2023: "
        "`spectrum_dataset`'s average, else a 1/f prior), with a transparency map (alpha.npy).",
    )
    spectrum_dataset: str | None = Field(
        default=None,
        description="maco only: the image dataset whose average Fourier magnitude the images keep "
        "(computed once per dataset and input size, then cached). Default: `reference_dataset` if "
        "given, else the 1/f natural-image prior.",
    )
    init: InitImage | None = Field(
        default=None,
        description="Feature accentuation (Hamblin et al. 2024): start from this image instead of noise; "
        "the result shows the seed, the accentuation and their difference.",
    )
    accentuation: AccentuationSpec | None = Field(
        default=None, description="With `init`: the term keeping a layer's activations near the seed's."
    )
    path_similarity: PathSimilaritySpec = Field(
        default_factory=PathSimilaritySpec,
        description="The trust panel's path-similarity check (Geirhos et al. 2024), on by default with a "
        "`reference_dataset`.",
    )
    decorrelate: bool = Field(
        default=True, description="Optimize in a decorrelated colour space (Lucid's ImageNet colour SVD)."
    )
    init_sd: float = Field(
        default=DEFAULT_INIT_SD,
        ge=0.0,
        le=10.0,
        description="Standard deviation of the random starting parameters (Lucid: 0.01). 0.2 starts "
        "from faint 1/f noise rather than flat grey, which max-pooling networks need: on a flat image "
        "their gradient switches between pooled pixels from step to step and stalls.",
    )
    transforms: Literal["standard", "none"] | list[TransformSpec] = Field(
        default="standard",
        description="Random transforms applied before every step (transformation robustness). "
        "standard: Lucid's set (pad 12, jitter 8, scale 0.9-1.1, rotate +-10, jitter 4 at 128 px, "
        "scaled with `size`); none; or a list such as "
        '[{"type": "jitter", "pixels": 4}, {"type": "rotate", "degrees": 5}] '
        "(types: pad, jitter, scale, rotate; a bare name takes the defaults).",
    )
    regularizers: RegularizerSpec = Field(default_factory=RegularizerSpec)
    reference_dataset: str | None = Field(
        default=None,
        description="An image dataset id: each unit's strongest activation over it is reported "
        "(dataset_max, ratio_to_dataset_max).",
    )
    seed: int = Field(default=0, ge=0, description="Same seed, same images (on a given device).")
    thresholds: list[int] = Field(
        default_factory=list, description="Steps at which snapshots are also saved (snapshots.npy)."
    )

    @field_validator("size")
    @classmethod
    def _size_limit(cls, size: int, info: ValidationInfo) -> int:
        if size > (most := limit(info, "MAX_SIZE")):
            raise _limit_error("size", size, most, "MAX_SIZE")
        return size

    @field_validator("steps")
    @classmethod
    def _steps_limit(cls, steps: int, info: ValidationInfo) -> int:
        if steps > (most := limit(info, "MAX_STEPS")):
            raise _limit_error("steps", steps, most, "MAX_STEPS")
        return steps

    @field_validator("images_per_unit")
    @classmethod
    def _per_unit_limit(cls, count: int, info: ValidationInfo) -> int:
        if count > (most := limit(info, "MAX_IMAGES_PER_UNIT")):
            raise _limit_error("images_per_unit", count, most, "MAX_IMAGES_PER_UNIT")
        return count

    @field_validator("transforms", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"type": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _totals(self, info: ValidationInfo) -> ActivationMaximizationParams:
        units = max(1, len(self.objective.units))
        total = units * self.images_per_unit
        if total > (most := limit(info, "MAX_IMAGES")):
            raise _limit_error("units x images_per_unit", total, most, "MAX_IMAGES")
        if len(self.thresholds) > MAX_THRESHOLDS:
            raise ValueError(f"at most {MAX_THRESHOLDS} thresholds")
        for step in self.thresholds:
            if not 1 <= step <= self.steps:
                raise ValueError(f"threshold {step} is not a step between 1 and steps ({self.steps})")
        if self.lr is None:
            self.lr = DEFAULT_MACO_LR if self.parameterization == "maco" else DEFAULT_LR
        if self.accentuation is not None and self.init is None:
            raise ValueError("`accentuation` tunes a render that starts from `init`; give `init` too")
        if self.spectrum_dataset is not None and self.parameterization != "maco":
            raise ValueError("`spectrum_dataset` is the magnitude of parameterization maco only")
        if self.parameterization == "maco":
            edits = [name for name in MACO_UNSUPPORTED_REGULARIZERS if getattr(self.regularizers, name)]
            if edits:
                raise ValueError(
                    f"regularizers {edits} edit the image's magnitude, which maco keeps fixed; use tv, or "
                    "parameterization fft"
                )
        return self

    def spectrum_source(self) -> str | None:
        """The dataset MACO's magnitude comes from (None: the 1/f prior, or not maco)."""
        if self.parameterization != "maco":
            return None
        return self.spectrum_dataset or self.reference_dataset

    def transform_specs(self) -> list[dict[str, Any]]:
        """The transforms as explicit specs (`standard` resolved at this size)."""
        if self.transforms == "standard":
            return standard_transforms(self.size)
        if self.transforms == "none":
            return []
        return [t.model_dump() for t in self.transforms]


def activation_maximization_cost(
    params: ActivationMaximizationParams, record: dict[str, Any], datasets: dict[str, dict[str, Any]]
) -> Estimate:
    """`steps` forward and backward passes of the whole batch (units x images_per_unit) to the
    objective's layer, plus rendering each image at `size` every step; then a forward pass over
    the reference dataset, if any, and a PNG per image."""
    batch = max(1, len(params.objective.units)) * params.images_per_unit
    layer = params.objective.layer or default_class_layer(record)
    net = network(record, layer)
    reference = int(datasets[params.reference_dataset].get("count") or 0) if params.reference_dataset else 0
    pixels = input_pixels(record)

    def work(rates: Rates) -> float:
        step = rates.step + net.backward(rates, batch, batch) + batch * params.size**2 * rates.render_pixel
        return (
            rates.job
            + params.steps * step
            + reference * pixels * rates.input_pixel
            + net.forward(rates, reference)
            + 2 * batch * rates.image_file
        )

    return estimate(
        work,
        f"{params.steps} steps of {batch} image(s) rendered at {params.size} px, each a forward and backward "
        f"pass to {layer or 'the last layer'!r} ({net.describe()})"
        + (f"; a forward pass over {reference} reference images" if reference else ""),
    )


def _datasets(params: ActivationMaximizationParams) -> list[DatasetUse]:
    uses = [
        DatasetUse(("reference_dataset",), params.reference_dataset, "images") if params.reference_dataset else None,
        DatasetUse(("spectrum_dataset",), params.spectrum_dataset, "images") if params.spectrum_dataset else None,
        DatasetUse(("init", "dataset"), params.init.dataset, "images") if params.init and params.init.dataset else None,
    ]
    return [use for use in uses if use is not None]


JOB_KINDS = [
    JobKind(
        name="activation_maximization",
        params_model=ActivationMaximizationParams,
        handler="worker.kinds.activation_maximization:run",
        description="Activation maximization (Olah et al. 2017; Yosinski et al. 2015): from random "
        "pixels, optimize images that excite a neuron, channel, layer, class or direction most, with a "
        "1/f Fourier parameterization, decorrelated colour and random transforms. Several units render "
        "in one batched optimization; result.json reports each image's activation, its robustness to "
        "transforms, its ratio to the strongest dataset example and whether the unit is the top one.",
        check=check_activation_maximization,
        cost=activation_maximization_cost,
        datasets=_datasets,
    )
]

"""`atlas`: every unit of a layer in one job, a Microscope for the user's own model: per unit its
top dataset exemplars (from the activation index) with their projections to pixels, and a
feature visualization rendered from noise (Borowski et al. 2021: people predict a unit best
from both together).

The job plans on one worker and hands itself over (service/jobstore/fanout.py) to steps that
any worker takes: the index's shards and merge when the layer is not indexed yet, then chunks of
units (exemplars projected as a deconvnet job would, feature visualizations rendered many units
at a time as an activation-maximization job would), then one assembly. Chunks are kept under the
atlas's key (model and dataset content, layer, params): the same atlas submitted again resumes
where a crash or a cancel left it, or is assembled from its stored chunks at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from service.jobspec import DatasetUse, JobKind, fanout_step
from service.kinds.activation_index import DEFAULT_K as INDEX_K
from service.kinds.activation_index import DEFAULT_SHARD_IMAGES, MAX_K
from service.kinds.activation_maximization import ActivationMaximizationParams, limit
from service.kinds.cost import Estimate, Rates, estimate, input_pixels, network
from service.kinds.deconvnet import MAX_CHANNELS, MAX_PROJECTIONS
from service.kinds.layers import check_projection_method, check_units, find_layer
from service.validation import invalid

DEFAULT_TOP_K = 9
MAX_UNITS = 4096
DEFAULT_CHUNK_UNITS = 32
MAX_EXEMPLARS = 64  # top_k and bottom_k each (an index keeps up to MAX_K)
# What an atlas renders each unit with unless told: an activation-maximization job's defaults
# (channel objective), a little shorter and smaller, since a layer has hundreds of units.
DEFAULT_FEATURE_VISUALIZATION: dict[str, Any] = {"steps": 128, "size": 96}


class AtlasParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str = Field(description="A convolutional layer, as listed by GET /v1/models/{id}.")
    dataset: str = Field(description="An image dataset id: where the exemplars come from.")
    units: list[int] | None = Field(
        default=None, min_length=1, max_length=MAX_UNITS, description="Channels of the layer (default: every one)."
    )
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=MAX_EXEMPLARS, description="Top exemplars per unit.")
    bottom_k: int = Field(
        default=0, ge=0, le=MAX_EXEMPLARS, description="Bottom exemplars per unit (for layers that go negative)."
    )
    method: Literal["deconvnet", "guided_backprop", "saliency"] = Field(
        default="deconvnet", description="How the exemplars are projected to pixels (as in a deconvnet job)."
    )
    feature_visualization: dict[str, Any] | None = Field(
        default_factory=lambda: dict(DEFAULT_FEATURE_VISUALIZATION),
        description="The activation_maximization params each unit is rendered with (a channel objective on "
        f"`layer` is added; default {json.dumps(DEFAULT_FEATURE_VISUALIZATION)}, the rest that kind's "
        "defaults), or null to skip the feature visualizations.",
    )
    chunk_units: int = Field(default=DEFAULT_CHUNK_UNITS, ge=1, le=MAX_CHANNELS, description="Units a worker takes at a time.")
    shard_images: int = Field(default=DEFAULT_SHARD_IMAGES, ge=16, le=1_000_000, description="Images per index shard.")
    batch_size: int = Field(default=64, ge=1, le=4096, description="Images per forward pass.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seeds the feature visualizations.")

    @field_validator("units")
    @classmethod
    def _distinct(cls, units: list[int] | None) -> list[int] | None:
        if units is not None and len(set(units)) != len(units):
            raise ValueError("a unit is named twice")
        return units

    @model_validator(mode="after")
    def _rendering(self, info: ValidationInfo) -> AtlasParams:
        if self.chunk_units * self.top_k > MAX_PROJECTIONS:
            raise ValueError(f"chunk_units x top_k is over {MAX_PROJECTIONS} projections per chunk; lower chunk_units")
        if self.feature_visualization is not None:
            rendering_params(self, [0], context=info.context)  # raises on params that kind refuses
            if self.chunk_units > (most := limit(info, "MAX_IMAGES")):
                raise ValueError(
                    f"chunk_units {self.chunk_units} is above activation maximization's batch limit of {most}"
                )
        return self


def rendering_params(
    params: AtlasParams, units: list[int], context: dict | None = None
) -> ActivationMaximizationParams:
    """The activation-maximization params that render `units` of the atlas's layer."""
    body = {**(params.feature_visualization or {}), "seed": params.seed}
    for own in ("objective", "seed"):
        if own in (params.feature_visualization or {}):
            raise ValueError(f"feature_visualization.{own} is the atlas's own (its layer and units, its seed)")
    body["objective"] = {"type": "channel", "layer": params.layer, "units": units}
    try:
        return ActivationMaximizationParams.model_validate(body, context=context)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"feature_visualization.{where}: {first['msg']}") from None


class AtlasChunkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    atlas: AtlasParams
    units: list[int]
    cache: str = Field(description="The atlas's chunk folder in the blob store")
    chunk: str = Field(description="This chunk's name in it")


class AtlasAssembleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    atlas: AtlasParams
    units: list[int]
    cache: str
    chunks: list[str]
    reused: int = Field(default=0, description="Chunks found already rendered when the job was planned")
    index_built: bool = False


def check_atlas(params: AtlasParams, record: dict[str, Any]) -> None:
    if record.get("kind") != "image":
        raise invalid(["body", "model"], f"an atlas needs an image model; {record['id']!r} is {record.get('kind')}")
    layer = find_layer(record, params.layer, ["body", "params", "layer"])
    if layer is not None and len(layer.get("output_shape") or []) != 3:
        raise invalid(["body", "params", "layer"], f"an atlas needs a convolutional layer ([C, H, W]); "
                      f"{params.layer!r} has shape {layer.get('output_shape')}")  # fmt: skip
    if layer is not None:
        check_projection_method(params.method, record, params.layer, ["body", "params", "method"])
    if layer is not None and params.units is not None:
        check_units(layer, params.units, ["body", "params", "units"])
    if max(params.top_k, params.bottom_k) > MAX_K:
        raise invalid(["body", "params", "top_k"], f"at most {MAX_K} exemplars per unit")


def atlas_units(params: AtlasParams, record: dict[str, Any]) -> list[int]:
    layer = next(entry for entry in record["layers"] if entry["name"] == params.layer)
    return list(params.units) if params.units is not None else list(range(int(layer["units"])))


def index_k(params: AtlasParams) -> int:
    """What the layer's index keeps per channel: enough for the exemplars, at least its default."""
    return max(INDEX_K, params.top_k, params.bottom_k)


def atlas_key(model: str, dataset: str, contract: dict[str, Any], params: AtlasParams) -> str:
    """Same model and dataset content, input contract and params (units and chunking included):
    the same chunks."""
    text = json.dumps([model, dataset, contract, params.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def atlas_cost(params: AtlasParams, record: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> Estimate:
    """Indexing the layer (a forward pass of every image, on first use), projecting every unit's
    exemplars (a backward pass each, batched), and rendering the feature visualizations (steps
    of forward and backward passes, `chunk_units` units at a time); the time on one worker."""
    images = int(datasets[params.dataset].get("count") or 0)
    units = len(atlas_units(params, record))
    net = network(record, params.layer)
    pixels = input_pixels(record)
    fv = rendering_params(params, [0]) if params.feature_visualization is not None else None

    def work(rates: Rates) -> float:
        index = images * pixels * rates.input_pixel + net.forward(rates, images, params.batch_size)
        exemplars = units * params.top_k
        projections = net.backward(rates, exemplars, params.batch_size) + 2 * units * rates.image_file
        render = 0.0
        if fv is not None:
            batch = min(units, params.chunk_units)
            per_step = rates.step + net.backward(rates, batch, batch) + batch * fv.size**2 * rates.render_pixel
            render = -(-units // batch) * fv.steps * per_step
        return rates.job + index + projections + render

    what = (
        f"{units} units of {params.layer!r} ({net.describe()}): the layer's index over {images} images if not built yet"
    )
    if fv is not None:
        what += f", and {fv.steps} steps at {fv.size} px rendering {min(units, params.chunk_units)} units at a time"
    return estimate(work, what)


JOB_KINDS = [
    JobKind(
        name="atlas",
        params_model=AtlasParams,
        handler="worker.kinds.atlas:run",
        description="Every unit of a layer in one job, fanned out over every worker: per unit its top "
        "dataset exemplars (from the activation index) with their projections, and a feature visualization; "
        "atlas.json lists the units with their numbers, units/<n>/ holds each unit's pictures.",
        check=check_atlas,
        datasets=lambda params: [DatasetUse(("dataset",), params.dataset, "images")],
        cost=atlas_cost,
    ),
    fanout_step("atlas_chunk", AtlasChunkParams, "worker.kinds.atlas.chunk:run", "One chunk of units of an atlas."),
    fanout_step("atlas_assemble", AtlasAssembleParams, "worker.kinds.atlas.assemble:run", "The assembly of an atlas."),
]

"""`activation_index`: scan a dataset once, fanned out over every worker, and keep per channel
of each chosen layer what later jobs ask of it (the top images and where, statistics, per
class). Deconvnet jobs take their top images from it and forward only those; activation
maximization reads its `dataset_max` from it; GET /v1/indexes lists what is indexed.

The job plans on one worker and hands itself over (service/jobstore/fanout.py): shards of
`shard_images` images, taken by any worker, then a merge that writes one index per layer.
Several layers are indexed in one pass over the images (one forward to the deepest). A layer
already indexed for this model and dataset is not scanned again; one being built by another
job is waited for (RQ runs this job's merge after that job's).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.jobspec import DatasetUse, JobKind, fanout_step
from service.kinds.cost import Estimate, Rates, estimate, input_pixels, network
from service.kinds.layers import find_layer
from service.validation import invalid

DEFAULT_K = 64
MAX_K = 256
MAX_LAYERS = 8
DEFAULT_SHARD_IMAGES = 2048


class ActivationIndexParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="An image dataset id.")
    layers: list[str] = Field(
        min_length=1, max_length=MAX_LAYERS, description="Layer names (GET /v1/models/{id}), indexed in one pass."
    )
    k: int = Field(
        default=DEFAULT_K, ge=1, le=MAX_K,
        description="Top (and bottom) images kept per channel: any later top_k up to it needs no rescan.",
    )  # fmt: skip
    shard_images: int = Field(
        default=DEFAULT_SHARD_IMAGES, ge=16, le=1_000_000, description="Images per shard (the unit a worker takes)."
    )
    batch_size: int = Field(default=64, ge=1, le=4096, description="Images per forward pass.")
    rebuild: bool = Field(default=False, description="Scan again even where an index exists.")

    @field_validator("layers")
    @classmethod
    def _distinct(cls, layers: list[str]) -> list[str]:
        if len(set(layers)) != len(layers):
            raise ValueError("a layer is named twice")
        return layers


class IndexShardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    layers: list[str]
    k: int
    start: int = Field(ge=0)
    stop: int = Field(ge=0)
    batch_size: int


class IndexMergeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    layers: list[str]
    indexes: dict[str, str] = Field(description="layer -> index id")
    k: int
    # Another job builds (some of) these indexes: this merge ran after it, and only reads them.
    waited_for: str | None = None
    # False: a stage of a bigger job (an atlas): publish the indexes, leave the job running.
    finish: bool = True


def check_activation_index(params: ActivationIndexParams, record: dict[str, Any]) -> None:
    if record.get("kind") != "image":
        raise invalid(["body", "model"], f"an activation index needs an image model; {record['id']!r} is {record.get('kind')}")
    for position, layer in enumerate(params.layers):
        find_layer(record, layer, ["body", "params", "layers", position])


def activation_index_cost(params: ActivationIndexParams, record: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> Estimate:
    """A forward pass of every image to the deepest layer (decoding overlaps it), the statistics
    (about 6 ns per activation on a CPU core, measured by worker/core/index/speed.py), and one
    merge; workers share the shards, so this is the time on one worker."""
    images = int(datasets[params.dataset].get("count") or 0)
    deepest = max(params.layers, key=lambda name: _position(record, name))
    net = network(record, deepest)
    pixels = input_pixels(record)
    activations = sum(_size(record, layer) for layer in params.layers)

    def work(rates: Rates) -> float:
        return rates.job + images * pixels * rates.input_pixel + net.forward(rates, images, params.batch_size) + images * activations * 6e-9

    return estimate(work, f"a forward pass of {images} images to {deepest!r} ({net.describe()}) and the statistics of {len(params.layers)} layer(s)")


def _position(record: dict[str, Any], name: str) -> int:
    names = [entry["name"] for entry in record.get("layers") or []]
    return names.index(name) if name in names else len(names)


def _size(record: dict[str, Any], name: str) -> int:
    for entry in record.get("layers") or []:
        if entry["name"] == name:
            size = 1
            for dim in entry["output_shape"]:
                size *= int(dim)
            return size
    return 0


JOB_KINDS = [
    JobKind(
        name="activation_index",
        params_model=ActivationIndexParams,
        handler="worker.kinds.activation_index:run",
        description="Scan an image dataset once, fanned out over every worker, and keep per channel of "
        "each chosen layer its top and bottom images (value, image, position), mean, std, fraction positive, "
        "quantiles and per-class mean and max; deconvnet and activation maximization then read it instead "
        "of rescanning. GET /v1/indexes lists the indexes.",
        check=check_activation_index,
        datasets=lambda params: [DatasetUse(("dataset",), params.dataset, "images")],
        cost=activation_index_cost,
    ),
    fanout_step("activation_index_shard", IndexShardParams, "worker.kinds.activation_index.shard:run",
                "One shard of an activation index build."),
    fanout_step("activation_index_merge", IndexMergeParams, "worker.kinds.activation_index.merge:run",
                "The merge of an activation index build."),
]

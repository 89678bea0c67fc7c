"""`deconvnet`: project what excites a feature map back to pixels (Zeiler & Fergus 2014)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.jobspec import DatasetUse, JobKind
from service.kinds.cost import Estimate, Rates, estimate, input_pixels, network
from service.kinds.layers import check_position, check_projection_method, check_units, find_layer
from service.uploads import UploadRejected, check_image_header
from service.validation import invalid

MAX_INLINE_IMAGES = 64
MAX_INLINE_IMAGE_BYTES = 4 * 1024 * 1024
MAX_CHANNELS = 64
MAX_TOP_K = 64
MAX_PROJECTIONS = 1024
DEFAULT_TOP_CHANNELS = 8


class DeconvnetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str = Field(description="A layer name as listed by GET /v1/models/{id}.")
    channels: list[int] | None = Field(
        default=None, min_length=1, max_length=MAX_CHANNELS, description="Feature maps to project."
    )
    top_channels: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CHANNELS,
        description="Without `channels`: how many channels to show (default 8), chosen to show different things: "
        "the strongest, then each time the one whose top-k images overlap least with those already chosen.",
    )
    dataset: str | None = Field(
        default=None, description="An image dataset id (its images in file-name order, shard by shard)."
    )
    images: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INLINE_IMAGES,
        description="Base64 PNG or JPEG images, for small requests.",
    )
    top_k: int = Field(
        default=9, ge=1, le=MAX_TOP_K, description="Per channel, the k images where it is strongest (Z&F's top 9)."
    )
    position: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=2,
        description="[y, x] in the layer's feature map, or [token] in a `tokens` layer (a transformer's; "
        "GET /v1/models/{id} lists each layer's `layout`): project that neuron (one image, one channel).",
    )
    method: Literal["deconvnet", "guided_backprop", "saliency"] = Field(
        default="deconvnet",
        description="deconvnet: ReLUs rectify the signal going down; guided_backprop: also masked by "
        "the forward input; saliency: the plain gradient. deconvnet and guided_backprop are defined for "
        "ReLU networks only: a layer reached through a GELU, SiLU, sigmoid, attention ... is a 422 for "
        "them; saliency applies to every network.",
    )
    crop: bool = Field(default=True, description="Crop each figure cell to the neuron's receptive field.")
    batch_size: int = Field(
        default=32, ge=1, le=1024, description="Neurons projected per backward pass (memory bound)."
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Seeds the randomization check's random weights (the projections have no randomness).",
    )
    randomization_check: bool = Field(
        default=False,
        description="The trust panel's sanity check (Adebayo et al. 2018): the same projections on a copy of the model "
        "whose weights from the layer down to the input are re-initialized, and their similarity to the real ones "
        "(rank correlation and SSIM, corrected by a control pair); flagged when the projection barely depends on the "
        "learned weights. About two more projection passes.",
    )

    @field_validator("images")
    @classmethod
    def _decodable(cls, images: list[str] | None) -> list[str] | None:
        for index, text in enumerate(images or []):
            try:
                data = base64.b64decode(text.split(",", 1)[-1], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"images[{index}] is not base64") from exc
            if len(data) > MAX_INLINE_IMAGE_BYTES:
                raise ValueError(f"images[{index}] is over {MAX_INLINE_IMAGE_BYTES} bytes; upload a dataset instead")
            try:
                check_image_header(data, f"images[{index}]")
            except UploadRejected as exc:
                raise ValueError(str(exc)) from None
        return images

    @model_validator(mode="after")
    def _one_source(self) -> DeconvnetParams:
        if (self.dataset is None) == (self.images is None):
            raise ValueError("give exactly one of `dataset` or `images`")
        if self.channels is not None and self.top_channels is not None:
            raise ValueError("give `channels` or `top_channels`, not both")
        if self.position is not None:
            if self.images is None or len(self.images) != 1 or not self.channels or len(self.channels) != 1:
                raise ValueError(
                    "`position` projects one neuron: it needs exactly one image in `images` and one channel"
                )
        if len(self.channels or range(self.top_channels or DEFAULT_TOP_CHANNELS)) * self.top_k > MAX_PROJECTIONS:
            raise ValueError(f"channels x top_k is over {MAX_PROJECTIONS} projections; ask for fewer")
        return self


def check_deconvnet(params: DeconvnetParams, record: dict[str, Any]) -> None:
    if record.get("kind") != "image":
        raise invalid(["body", "model"], f"deconvnet needs an image model; {record['id']!r} is {record.get('kind')}")
    layer = find_layer(record, params.layer, ["body", "params", "layer"])
    if layer is None:
        return  # layers not recorded yet (a torchvision model no job has loaded): the worker checks
    check_projection_method(params.method, record, params.layer, ["body", "params", "method"])
    if params.channels is not None:
        check_units(layer, params.channels, ["body", "params", "channels"])
    if params.top_channels is not None and params.top_channels > layer["units"]:
        raise invalid(["body", "params", "top_channels"], f"layer {layer['name']!r} has {layer['units']} channels")
    if params.position is not None:
        check_position(layer, params.position, ["body", "params", "position"])


def deconvnet_cost(params: DeconvnetParams, record: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> Estimate:
    """A forward pass over the images (stopping at the layer), then per projected neuron a
    forward and backward pass for its projection and two more for its receptive field, and a PNG."""
    images = len(params.images) if params.images is not None else int(datasets[params.dataset].get("count") or 0)
    channels = (
        1 if params.position is not None else len(params.channels or range(params.top_channels or DEFAULT_TOP_CHANNELS))
    )
    projections = 1 if params.position is not None else channels * min(params.top_k, images)
    net = network(record, params.layer)
    pixels = input_pixels(record)

    def work(rates: Rates) -> float:
        return (
            rates.job
            + images * pixels * rates.input_pixel
            + net.forward(rates, images, params.batch_size)
            + net.backward(rates, 3 * projections, params.batch_size)
            + 2 * projections * rates.image_file
        )

    return estimate(
        work,
        f"a forward pass of {images} images to {params.layer!r} ({net.describe()}), then {projections} "
        "projections (a backward pass each, and two for their receptive fields) and their PNGs",
    )


JOB_KINDS = [
    JobKind(
        name="deconvnet",
        params_model=DeconvnetParams,
        handler="worker.kinds.deconvnet:run",
        description="Zeiler & Fergus deconvnet: for each chosen feature map, the images that excite it "
        "most and the projection of its strongest activation back to pixel space (also guided "
        "backpropagation and plain gradient saliency).",
        check=check_deconvnet,
        cost=deconvnet_cost,
        datasets=lambda params: [DatasetUse(("dataset",), params.dataset, "images")] if params.dataset else [],
    )
]

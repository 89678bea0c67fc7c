"""Where an activation-maximization image starts, and MACO's magnitude spectrum: the params
models of feature accentuation (`init`, `accentuation`) and of `spectrum_dataset`.

Feature accentuation (Hamblin et al. 2024) starts from a real image (a dataset's, or one sent
inline) instead of noise and keeps a layer's activations close to the seed's; the worker side
is worker/core/actmax/accentuation.py. No torch here: the API imports this module.
"""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.uploads import UploadRejected, check_image_header

MAX_INIT_IMAGE_BYTES = 4 * 1024 * 1024


class InitImage(BaseModel):
    """The seed: one image of an image dataset (by file name or position), or an inline one."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(default=None, description="An image dataset id holding the seed image.")
    image: str | None = Field(
        default=None,
        description="With `dataset`: the image's file name, as listed by the dataset (e.g. 0007-red-circle.png).",
    )
    index: int | None = Field(
        default=None, ge=0, description="With `dataset`: the image's position in file-name order."
    )
    data: str | None = Field(default=None, description="Instead of a dataset: a base64 PNG or JPEG (4 MiB at most).")

    @field_validator("data")
    @classmethod
    def _decodable(cls, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            data = base64.b64decode(text.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("init.data is not base64") from exc
        if len(data) > MAX_INIT_IMAGE_BYTES:
            raise ValueError(f"init.data is over {MAX_INIT_IMAGE_BYTES} bytes")
        try:
            check_image_header(data, "init.data")
        except UploadRejected as exc:
            raise ValueError(str(exc)) from None
        return text

    @model_validator(mode="after")
    def _one_source(self) -> InitImage:
        if (self.dataset is None) == (self.data is None):
            raise ValueError("give exactly one of `dataset` (with `image` or `index`) or `data`")
        if self.dataset is not None and (self.image is None) == (self.index is None):
            raise ValueError("with `dataset`, give exactly one of `image` (a file name) or `index`")
        if self.data is not None and (self.image is not None or self.index is not None):
            raise ValueError("`image` and `index` pick an image of `dataset`; with `data` leave them out")
        return self


class AccentuationSpec(BaseModel):
    """The term that keeps an accentuation near its seed (see worker/core/actmax/accentuation.py)."""

    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        default=None,
        description="The layer whose activations stay close to the seed's (default: the objective's layer).",
    )
    weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1e6,
        description="Weight of the relative L2 distance to the seed's activations. Default (null): set "
        "automatically on the first step to the ratio of the objective's gradient norm to the "
        "distance's, per image (reported in result.json).",
    )
    objective_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=1e6,
        description="Weight of the objective. 0 returns the seed unchanged (the distance's gradient is 0 there).",
    )

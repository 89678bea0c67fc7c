"""The random transforms of activation maximization, as a request names them (specs only).

Lucid's transformation robustness: each optimization step sees the image padded, jittered,
scaled and rotated at random. The specs are validated here, torch-free;
`worker.core.actmax.transforms` builds them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["pad"]
    pixels: int = Field(default=12, ge=0, le=256)
    mode: Literal["constant", "reflect"] = Field(default="constant", description="constant pads with grey (0.5).")


class JitterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["jitter"]
    pixels: int = Field(default=8, ge=0, le=256, description="A random crop, up to this many px off.")


class ScaleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["scale"]
    min: float = Field(default=0.9, gt=0.0, le=4.0)
    max: float = Field(default=1.1, gt=0.0, le=4.0)

    @model_validator(mode="after")
    def _ordered(self) -> ScaleSpec:
        if self.min > self.max:
            raise ValueError("scale: min must be at most max")
        return self


class RotateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["rotate"]
    degrees: float = Field(default=10.0, ge=0.0, le=180.0, description="A random rotation in [-degrees, degrees].")


TransformSpec = Annotated[PadSpec | JitterSpec | ScaleSpec | RotateSpec, Field(discriminator="type")]

# Lucid's standard_transforms at 128 px: pad 12, jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4.
# For another `size` the pixel amounts scale with it (pad 24 at 256 px).
STANDARD_TRANSFORMS: list[dict[str, Any]] = [
    {"type": "pad", "pixels": 12, "mode": "constant"},
    {"type": "jitter", "pixels": 8},
    {"type": "scale", "min": 0.9, "max": 1.1},
    {"type": "rotate", "degrees": 10.0},
    {"type": "jitter", "pixels": 4},
]


def standard_transforms(size: int) -> list[dict[str, Any]]:
    factor = size / 128.0
    out = []
    for spec in STANDARD_TRANSFORMS:
        spec = dict(spec)
        if "pixels" in spec:
            spec["pixels"] = max(1, round(spec["pixels"] * factor))
        out.append(spec)
    return out

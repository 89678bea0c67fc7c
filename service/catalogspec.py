"""The shapes of model and dataset records: written by workers, served by the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Layer(BaseModel):
    name: str = Field(description="Dotted module name; `@k` marks the k-th extra call of a reused module, "
                      "`module:relu` an activation called as a function inside `module.forward`.")
    type: str
    output_shape: list[int] = Field(description="Without the batch dimension, for the model's input size.")
    units: int = Field(description="Channels of a feature map, or features of a vector.")


class ModelInfo(BaseModel):
    id: str
    name: str
    kind: Literal["image", "tabular", "test"]
    source: Literal["builtin", "torchvision", "upload", "plugin"] = "plugin"
    status: Literal["available", "pending", "ready", "failed"] = Field(
        default="ready",
        description="`available`: known, layers listed after the first job loads it; "
        "`pending`: uploaded, being inspected; `ready`; `failed` (see `error`).",
    )
    description: str = ""
    input: dict[str, Any] | None = Field(default=None, description="The input contract (manifest `input`).")
    labels: list[str] | None = None
    layers: list[Layer] | None = None
    parameters: int | None = None
    output: str | None = Field(default=None, description="What the outputs mean (tabular models).")
    error: str | None = None


class ModelSummary(BaseModel):
    id: str
    name: str
    kind: str
    source: str
    status: str
    description: str = ""


class DatasetInfo(BaseModel):
    id: str
    kind: Literal["images", "table"]
    source: Literal["builtin", "upload"] = "builtin"
    description: str = ""
    count: int = Field(description="Images, or rows.")
    image_size: list[int] | None = None
    columns: list[dict[str, Any]] | None = Field(default=None, description="Name and inferred type of each column.")

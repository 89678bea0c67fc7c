"""The shapes of model and dataset records: written by workers, served by the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from service.plain_json import check_plain_json


class Layer(BaseModel):
    name: str = Field(description="Dotted module name; `@k` marks the k-th extra call of a reused module, "
                      "`module:relu` an activation called as a function inside `module.forward`.")
    type: str
    output_shape: list[int] = Field(
        description="Without the batch dimension, for the model's input size, channels first whatever the "
        "module writes: [C, H, W] for a feature map, [F, T] for a transformer's tokens. Units and positions "
        "in jobs address this shape."
    )
    units: int = Field(description="Channels of a feature map, features of a vector or of each token.")
    layout: Literal["channels_first", "tokens", "channels_last"] = Field(
        default="channels_first",
        description="How the module lays its output out: `channels_first` ([C, H, W] or a vector); `tokens` "
        "([T, F]: units are the F features, a position is [token]); `channels_last` ([H, W, C], e.g. inside "
        "a ConvNeXt block: units are C, a position is [y, x]). Jobs see every layer channels first.",
    )
    raw_shape: list[int] | None = Field(
        default=None, description="`tokens` and `channels_last` layers: the module's own output shape (features last)."
    )
    token_grid: list[int] | None = Field(
        default=None,
        description="`tokens` layers of an image model whose tokens are image patches: [rows, columns] of the "
        "patch grid. Token `prefix_tokens + r * columns + c` is the patch at row r, column c; the receptive "
        "field shown for a token is its patch (a class token: the whole image).",
    )
    prefix_tokens: int | None = Field(
        default=None, description="With `token_grid`: tokens before the patches (1: a class token)."
    )
    note: str | None = Field(
        default=None,
        description="What the layer is good for, where worth saying: the MLP hidden layers of transformers and "
        "ConvNeXt blocks are the informative ones for activation maximization.",
    )


class ModelBatch(BaseModel):
    min: int = Field(ge=1, description="Smallest batch the model takes.")
    max: int | None = Field(default=None, ge=1, description="Largest batch it takes; null: no limit.")


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
    inspection_job: str | None = Field(default=None, description="Uploads: the job that inspects the model.")
    batch: ModelBatch | None = Field(
        default=None,
        description="The batch sizes (dim 0 of the input) the model takes, found at inspection: what a "
        "torch.export archive declares, confirmed by running it. An archive exported without "
        "`dynamic_shapes` takes only its example's batch size (`{\"min\": 1, \"max\": 1}`): jobs then "
        "feed it pieces of at most `max` inputs and pad a piece smaller than `min` by repeating an "
        "input, so every job kind works, only slower. null until inspected.",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What to check about this model: defaults Glassbox filled in for the manifest "
        "(a torchvision architecture's mean/std), or a contract that may not be what the model was "
        "trained with (no normalization given).",
    )
    bytes: int | None = Field(default=None, description="Uploads: the size of the uploaded file.")
    sha256: str | None = Field(default=None, description="Uploads: the SHA-256 of the uploaded file (hex).")


class ModelSummary(BaseModel):
    id: str
    name: str
    kind: str
    source: str
    status: str
    description: str = ""


class DatasetFile(BaseModel):
    name: str = Field(description="The uploaded file's name (a shard's, for tar shards).")
    bytes: int
    sha256: str


class DatasetInfo(BaseModel):
    id: str
    kind: Literal["images", "table"]
    source: Literal["builtin", "upload", "registered"] = Field(
        default="builtin",
        description="`upload`: sent as files; `registered`: read where it is (`uri`), never copied.",
    )
    status: Literal["pending", "ready", "failed"] = Field(
        default="ready",
        description="`pending`: a registered source being indexed (the `dataset_indexing` job named in "
        "`indexing_job`); `ready`; `failed` (see `error`). Jobs can use a dataset once it is ready.",
    )
    description: str = ""
    count: int = Field(description="Images, or rows (0 while pending).")
    image_size: list[int] | None = Field(default=None, description="[H, W] when every image has that size.")
    columns: list[dict[str, Any]] | None = Field(
        default=None,
        description="Name, inferred type (`numeric` or `categorical`), count of `missing` cells, and, "
        "for a categorical column, its `categories` (null beyond 50 distinct values).",
    )
    format: Literal["zip", "tar", "tar-shards", "files", "csv"] | None = Field(
        default=None,
        description="How the data is stored: one zip or tar archive, tar shards (WebDataset), a folder of "
        "image files, or a CSV file.",
    )
    labels: list[str] | None = Field(
        default=None,
        description="Class names, from the ImageFolder layout (`<class>/<file>` below the folder all images "
        "share) or WebDataset `<key>.cls` files; null when the images carry no labels. Each image's class "
        "is recorded in the dataset's index.",
    )
    label_counts: dict[str, int] | None = Field(default=None, description="Images per class.")
    uri: str | None = Field(default=None, description="Registered datasets: the source, as registered.")
    files: list[DatasetFile] | None = Field(default=None, description="Uploads: the files stored.")
    bytes: int | None = Field(default=None, description="Uploads: the bytes stored (all files).")
    error: str | None = Field(default=None, description="Why indexing failed.")
    indexing_job: str | None = Field(default=None, description="Registered datasets: the job that indexes it.")
    skipped: list[str] = Field(
        default_factory=list,
        description="Archive entries left out as not images (README.txt, .DS_Store, __MACOSX/...); the first 20.",
    )
    skipped_count: int = Field(default=0, description="How many entries were left out in all.")


class DatasetRegistration(BaseModel):
    """`POST /v1/datasets` with a JSON body: data that already lives in the blob store or under
    an allowed dataset root, indexed where it is (never copied)."""

    model_config = {"extra": "forbid"}

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="The dataset id (default: the source's last path segment).",
    )
    source: str = Field(
        min_length=1,
        max_length=2048,
        description="`file:///absolute/path` (a folder of images in class folders, a folder of .tar shards, "
        "a .zip or a .tar, under one of GLASSBOX_DATASET_ROOTS) or `store:sources/<your tenant>/<path>` "
        "(a key or folder in the blob store).",
    )
    description: str = Field(default="", max_length=2000)


class ImageInput(BaseModel):
    model_config = {"extra": "forbid"}

    size: list[int] = Field(min_length=2, max_length=2, description="[H, W]")
    channels: int = Field(default=3, ge=1, le=4)
    mean: list[float] | None = None
    std: list[float] | None = None


class TabularFeature(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=200)
    type: Literal["numeric", "categorical"]
    categories: list[str] | None = Field(default=None, description="Categoricals: one-hot in this order.")
    mean: float | None = None
    std: float | None = Field(default=None, gt=0)


class TabularInput(BaseModel):
    model_config = {"extra": "forbid"}

    features: list[TabularFeature] = Field(min_length=1, max_length=2000)


class ModelInput(BaseModel):
    model_config = {"extra": "forbid"}

    image: ImageInput | None = None
    tabular: TabularInput | None = None


class ModelManifest(BaseModel):
    """The `manifest` part of a model upload (a JSON document)."""

    model_config = {"extra": "forbid"}

    @model_validator(mode="before")
    @classmethod
    def _plain_json(cls, data: Any) -> Any:
        check_plain_json(data, "manifest")
        return data

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["image", "tabular"]
    format: Literal["exported_program", "safetensors"]
    architecture: str | None = Field(
        default=None,
        description="For `safetensors`: `torchvision/<name>`, or a built-in architecture "
        "(`shapes-cnn`, `tabular-mlp`).",
    )
    input: ModelInput
    labels: list[str] | None = None
    description: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        if self.kind == "image" and self.input.image is None:
            raise ValueError("an image model needs input.image ({size, channels, mean, std})")
        if self.kind == "tabular" and self.input.tabular is None:
            raise ValueError("a tabular model needs input.tabular ({features: [...]})")
        if self.format == "safetensors" and not self.architecture:
            raise ValueError("format safetensors needs `architecture` (torchvision/<name>, shapes-cnn or tabular-mlp)")
        if self.input.image is not None:
            channels = self.input.image.channels
            for name in ("mean", "std"):
                values = getattr(self.input.image, name)
                if values is not None and len(values) != channels:
                    raise ValueError(f"input.image.{name} needs {channels} values, one per channel")
        if self.input.tabular is not None:
            names = [f.name for f in self.input.tabular.features]
            if len(set(names)) != len(names):
                raise ValueError("input.tabular.features repeats a name")
            for feature in self.input.tabular.features:
                if feature.type == "categorical" and not feature.categories:
                    raise ValueError(f"categorical feature {feature.name!r} needs its `categories`")
        return self

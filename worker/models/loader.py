"""From a job's model reference to a loaded, inspected `nn.Module` on the worker's device."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from service.catalogs import ModelCatalog
from service.catalogspec import ModelInfo
from service.model_refs import ModelRef, ModelRefError, parse_model_ref
from service.storage import BlobNotFound, BlobStore
from worker.context import JobFailed
from worker.core.batching import (
    BatchSizes,
    accepted_batch_sizes,
    confirm_batch_sizes,
    in_accepted_batches,
    set_accepted_batch_sizes,
)
from worker.core.probe import inspect_layers, set_layer_layouts
from worker.models import tabular
from worker.models.builtin import BUILTIN_MODELS
from worker.models.cache import LoadedModel, ModelCache
from worker.models.torchvision_models import WeightsUnavailable, load_torchvision
from worker.models.uploaded import ModelFile, load_exported_program, load_state_dict_into, safetensors_shapes

log = logging.getLogger("glassbox.worker")


def example_input(record: dict[str, Any], device: str) -> torch.Tensor:
    """A batch of one input that matches the model's input contract."""
    contract = record.get("input") or {}
    if "image" in contract:
        image = contract["image"]
        return torch.zeros(1, image.get("channels", 3), *image["size"], device=device)
    if "tabular" in contract:
        return torch.zeros(1, tabular.encoded_width(contract["tabular"]["features"]), device=device)
    raise JobFailed("model-invalid", "The model has no input contract", "its record lacks `input`")


def build_architecture(architecture: str, record: dict[str, Any], state_keys: dict[str, tuple]) -> nn.Module:
    if architecture.startswith("torchvision/"):
        return load_torchvision(ModelRef(architecture, weights="random"))
    if architecture == "shapes-cnn":
        from worker.models.shapes import ShapesCNN

        return ShapesCNN()
    if architecture == "tabular-mlp":
        # The sizes are read off the weights: hiddenK.weight is [size_k, width_k-1].
        hidden = [state_keys[f"hidden{k}.weight"][0] for k in range(1, 100) if f"hidden{k}.weight" in state_keys]
        n_inputs = tabular.encoded_width(record["input"]["tabular"]["features"])
        n_outputs = state_keys.get("out.weight", (1,))[0]
        return tabular.TabularMLP(n_inputs, n_outputs, hidden)
    raise JobFailed("model-invalid", "Unknown architecture", architecture)


def is_inspected(record: dict[str, Any]) -> bool:
    """Whether a model's catalog record lists its layers as jobs address them. A record written
    before layers had layouts is inspected again: its shapes may be a transformer's [tokens,
    features], which jobs now address features first."""
    layers = record.get("layers")
    return bool(layers) and record.get("status") == "ready" and all("layout" in entry for entry in layers)


def inspected_record(models: ModelLoader, tenant: str, model_text: str) -> dict[str, Any]:
    """The model's record with its layers: read from the catalog when an inspection already
    wrote them (any job that loaded the model did), else the model is loaded (and inspected)."""
    record = models.resolve(tenant, model_text)[2]
    return record if is_inspected(record) else models.load(tenant, model_text)[0].record


class ModelLoader:
    def __init__(self, catalog: ModelCatalog, store: BlobStore, cache: ModelCache, device: str):
        self.catalog = catalog
        self.store = store
        self.cache = cache
        self.device = device

    def resolve(self, tenant: str, model_text: str) -> tuple[ModelRef, str, dict[str, Any]]:
        try:
            ref = parse_model_ref(model_text)
        except ModelRefError as exc:
            raise JobFailed("invalid-params", "Invalid model reference", str(exc)) from exc
        found = self.catalog.find(tenant, ref.id)
        if found is not None:
            return ref, *found
        raise JobFailed("unknown-model", "No such model", f"{model_text!r} is not in the catalog (deleted?)")

    def load(self, tenant: str, model_text: str) -> tuple[LoadedModel, bool, float]:
        """The model (from the cache when there), whether it came from the cache, load seconds."""
        ref, scope, record = self.resolve(tenant, model_text)
        if record.get("status") == "failed":
            raise JobFailed("model-invalid", "The model failed inspection", record.get("error") or "")
        # Uploads are keyed by their file's sha256 and inspection job, so a re-upload is not confused.
        version = f"{record.get('inspection_job', '')}:{record.get('sha256') or record.get('bytes', '')}"
        key = f"{scope}:{ref.cache_key}:{version}"
        hits_before = self.cache.hits
        started = time.perf_counter()
        loaded = self.cache.get(key, lambda: self._load(scope, ref, record))
        return loaded, self.cache.hits > hits_before, time.perf_counter() - started

    def _load(self, scope: str, ref: ModelRef, record: dict[str, Any]) -> LoadedModel:
        module = self._build(scope, ref, record).to(self.device).eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        if record.get("batch"):  # confirmed by the model's inspection
            sizes = BatchSizes(**record["batch"])
            set_accepted_batch_sizes(module, None if sizes.any else sizes)
        if not is_inspected(record):
            record = self._inspect(scope, ref, module, record)
        # Every capture of a layer's output (worker/core/probe.py) turns it channels first.
        set_layer_layouts(module, {entry["name"]: entry["layout"] for entry in record["layers"]})
        return LoadedModel(module=module, record=record)

    def _build(self, scope: str, ref: ModelRef, record: dict[str, Any]) -> nn.Module:
        source = record.get("source")
        if source == "builtin":
            return BUILTIN_MODELS[ref.id].build()
        if source == "torchvision":
            try:
                return load_torchvision(ref)
            except WeightsUnavailable as exc:
                raise JobFailed("weights-unavailable", "Pretrained weights are not available", str(exc)) from exc
        if source == "upload":
            data = self._uploaded_file(ref, record)
            if record.get("format") == "exported_program":
                return load_exported_program(data)
            module = build_architecture(record["architecture"], record, safetensors_shapes(data))
            return load_state_dict_into(module, data)
        raise JobFailed("model-invalid", "This model cannot be loaded", f"source {source!r}")

    def _uploaded_file(self, ref: ModelRef, record: dict[str, Any]) -> ModelFile:
        """The upload's file in place where the store is local, else its bytes, streamed."""
        key = (record.get("file") or {}).get("key")
        if not key:
            raise JobFailed("unknown-model", "The uploaded file is not in the blob store yet",
                            f"model {ref.id!r} was uploaded before the blob store; restart a worker to move it")  # fmt: skip
        path = self.store.local_path(key)
        if path is not None and path.is_file():
            return path
        try:
            return self.store.get_bytes(key)
        except BlobNotFound as exc:
            raise JobFailed("unknown-model", "The uploaded file is gone", f"model {ref.id!r} was deleted") from exc

    def _inspect(self, scope: str, ref: ModelRef, module: nn.Module, record: dict[str, Any]) -> dict[str, Any]:
        example = example_input(record, self.device)

        def first_output(x: torch.Tensor) -> Any:
            output = module(x)
            return output[0] if isinstance(output, (tuple, list)) and output else output

        try:
            with torch.no_grad():
                batch = self._batch_sizes(module, record, example, first_output)
            layers = inspect_layers(module, example)
            with torch.no_grad():
                output = in_accepted_batches(module, example, first_output)
        except Exception as exc:
            raise JobFailed(
                "model-invalid",
                "A forward pass on an input matching the manifest failed",
                f"input {list(example.shape)}: {type(exc).__name__}: {exc}",
            ) from exc
        if not isinstance(output, torch.Tensor):
            raise JobFailed("model-invalid", "The model does not return a tensor", type(output).__name__)
        if not torch.isfinite(output).all():
            raise JobFailed("model-invalid", "The model's output is not finite", "NaN or infinity on the example input")
        updated = dict(record)
        updated.update(
            status="ready",
            error=None,
            layers=[layer.to_dict() for layer in layers],
            batch=batch.to_dict(),
            parameters=sum(p.numel() for p in module.parameters()),
        )
        labels = record.get("labels")
        outputs = int(output.shape[-1]) if output.dim() > 1 else 1
        if labels and len(labels) != outputs:
            raise JobFailed("model-invalid", "Labels do not match the outputs", f"{len(labels)} labels, {outputs} outputs")
        ModelInfo.model_validate(updated)
        self.catalog.put(scope, ref.id, updated)
        return updated

    @staticmethod
    def _batch_sizes(module: nn.Module, record: dict[str, Any], example: torch.Tensor, forward) -> BatchSizes:
        """The batch sizes an uploaded archive takes (its declaration, confirmed by running it),
        set on the module for every later call; modules built here in Python take any."""
        if record.get("format") != "exported_program":
            return BatchSizes()
        declared = accepted_batch_sizes(module) or BatchSizes()
        set_accepted_batch_sizes(module, None)  # the confirming runs call the model as it is
        sizes = confirm_batch_sizes(forward, example, declared)
        set_accepted_batch_sizes(module, None if sizes.any else sizes)
        return sizes

"""Layer addressing, the model cache, and the upload guards, without Redis."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worker.context import JobFailed
from worker.core.probe import inspect_layers
from worker.models.cache import LoadedModel, ModelCache
from worker.models.uploaded import _check_payload_configs, load_state_dict_into, no_unpickling


class FunctionalNet(nn.Module):
    """ReLUs as functions, a reused ReLU module, and an in-place ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(self.pool(x))
        x = torch.relu_(x)
        return self.head(x.mean(dim=(2, 3)))


def test_every_activation_is_addressable_in_execution_order_with_its_shape():
    layers = inspect_layers(FunctionalNet().eval(), torch.zeros(1, 3, 8, 8))
    assert [(l.name, l.type, l.output_shape, l.units) for l in layers] == [
        ("conv1", "Conv2d", [4, 8, 8], 4),
        (":relu", "functional.relu", [4, 8, 8], 4),
        ("conv2", "Conv2d", [6, 8, 8], 6),
        ("act", "ReLU", [6, 8, 8], 6),
        ("pool", "MaxPool2d", [6, 4, 4], 6),
        ("act@1", "ReLU", [6, 4, 4], 6),
        (":relu@1", "functional.relu", [6, 4, 4], 6),
        ("head", "Linear", [2], 2),
    ]


def test_inspection_leaves_no_hooks_behind():
    model = FunctionalNet().eval()
    inspect_layers(model, torch.zeros(1, 3, 8, 8))
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def _loaded(megabytes: int) -> LoadedModel:
    return LoadedModel(module=nn.Linear(megabytes * 256 * 1024, 1, bias=False), record={})


def test_cache_serves_hits_and_evicts_least_recently_used_under_its_budget():
    cache = ModelCache(budget_bytes=3 * 1024 * 1024)
    loads = []

    def loader(name, size):
        def load():
            loads.append(name)
            return _loaded(size)

        return load

    a = cache.get("a", loader("a", 1))
    assert cache.get("a", loader("a", 1)) is a and loads == ["a"]
    cache.get("b", loader("b", 1))
    cache.get("a", loader("a", 1))  # a is now the most recent
    cache.get("c", loader("c", 2))  # 4 MB > 3 MB: the least recent (b) goes
    assert cache.keys() == ["a", "c"] and loads == ["a", "b", "c"]
    cache.get("huge", loader("huge", 5))  # larger than the budget: served, alone
    assert cache.keys() == ["huge"]


def test_the_guard_refuses_any_unpickling_and_forces_weights_only():
    import pickle

    from worker.models.uploaded import PickleRefused

    with no_unpickling():
        with pytest.raises(PickleRefused):
            pickle.loads(pickle.dumps({"a": 1}))
        buffer = io.BytesIO()
        torch.save({"w": torch.ones(2)}, buffer)
        buffer.seek(0)
        assert torch.equal(torch.load(buffer)["w"], torch.ones(2))  # tensors only: fine
        buffer = io.BytesIO()
        torch.save(nn.Linear(1, 1), buffer)  # a module: needs real unpickling
        buffer.seek(0)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(buffer, weights_only=False)
    assert pickle.loads(pickle.dumps({"a": 1})) == {"a": 1}  # restored afterwards


def test_archives_whose_payloads_are_marked_pickled_are_refused_before_loading():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/archive_format", "pt2")
        archive.writestr(
            "m/data/weights/model_weights_config.json",
            json.dumps({"config": {"w": {"path_name": "weight_0", "is_param": True, "use_pickle": True}}}),
        )
    with pytest.raises(JobFailed, match="pickled"):
        _check_payload_configs(buffer.getvalue())


def test_weights_that_do_not_fit_name_the_missing_unexpected_and_mismatched_keys():
    from safetensors.torch import save

    state = {"0.weight": torch.zeros(3, 2), "extra": torch.zeros(1)}
    with pytest.raises(JobFailed) as info:
        load_state_dict_into(nn.Sequential(nn.Linear(2, 4)), save(state))
    detail = info.value.detail
    assert "missing keys: 0.bias" in detail and "unexpected keys: extra" in detail
    assert "0.weight (3, 2) vs (4, 2)" in detail


def test_capture_activation_returns_the_layer_output_and_stops_there():
    from worker.core.probe import capture_activation

    model = FunctionalNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        first_relu = F.relu(model.conv1(x))
        second_act = model.act(model.pool(model.act(model.conv2(first_relu))))
    assert torch.equal(capture_activation(model, x, ":relu"), first_relu)
    assert torch.equal(capture_activation(model, x, "act@1"), second_act)

    def fail(*_):
        raise AssertionError("a layer after the captured one was computed")

    handle = model.head.register_forward_pre_hook(fail)
    try:
        capture_activation(model, x, ":relu@1")
    finally:
        handle.remove()
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    with pytest.raises(KeyError):
        capture_activation(model, x, "nope")
    with pytest.raises(KeyError):
        capture_activation(model, x, "act@5")


def test_torchvision_catalog_records_are_kept_per_version_and_a_worker_starts_without_torchvision(tmp_path):
    import importlib.metadata
    import subprocess
    import sys

    from worker.models.torchvision_models import catalog_record, catalog_records, classification_architectures

    records = catalog_records(tmp_path)
    assert records == [catalog_record(a) for a in classification_architectures()]
    cache = tmp_path / f"torchvision-{importlib.metadata.version('torchvision')}-catalog.json"
    assert json.loads(cache.read_text()) == records and not list(tmp_path.glob("*.tmp"))
    cache.write_text(json.dumps([{"id": "torchvision/from-the-cache"}]))
    assert catalog_records(tmp_path) == [{"id": "torchvision/from-the-cache"}]
    # Importing torchvision (and torch._dynamo with it) would double a worker's start.
    probe = "import sys, worker.main; print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]

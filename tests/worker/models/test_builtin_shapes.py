"""The built-in demo model `shapes-cnn` and its dataset `shapes-val`: generator and shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from worker.models.shapes import (
    SHAPES_CLASSES,
    SHAPES_INPUT,
    SHAPES_MEAN,
    SHAPES_REPORT,
    SHAPES_STD,
    SHAPES_VAL_COUNT,
    SHAPES_WEIGHTS,
    ShapesCNN,
    generate_shapes,
    preprocess,
    shapes_val,
)

K = len(SHAPES_CLASSES)


@pytest.fixture(scope="module")
def val() -> tuple[np.ndarray, np.ndarray]:
    return shapes_val()


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(SHAPES_REPORT.read_text())


@pytest.fixture(scope="module")
def predictions(val) -> np.ndarray:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = ShapesCNN()
    model.load_state_dict(load_file(str(SHAPES_WEIGHTS)), strict=True)
    model.eval()
    with torch.no_grad():
        return model(preprocess(val[0])).argmax(1).numpy()


def test_generator_shapes_dtypes_balance():
    images, labels = generate_shapes(57, seed=3)
    assert images.shape == (57, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (57,) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=K)
    assert len(counts) == K and counts.min() == 57 // K and counts.max() == 57 // K + 1
    assert counts.sum() == 57

    small, small_labels = generate_shapes(20, seed=3, size=32)
    assert small.shape == (20, 32, 32, 3) and np.bincount(small_labels).tolist() == [2] * K

    empty, empty_labels = generate_shapes(0, seed=3)
    assert empty.shape == (0, 64, 64, 3) and empty_labels.shape == (0,)


def test_generator_is_deterministic_per_seed():
    a, la = generate_shapes(40, seed=11)
    b, lb = generate_shapes(40, seed=11)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    c, lc = generate_shapes(40, seed=12)
    assert not np.array_equal(a, c)
    assert not np.array_equal(la, lc)


def test_val_split_is_balanced(val):
    images, labels = val
    assert images.shape == (SHAPES_VAL_COUNT, 64, 64, 3)
    assert np.bincount(labels, minlength=K).tolist() == [SHAPES_VAL_COUNT // K] * K
    # images of one class are not all alike (position, scale, colour vary)
    first = images[labels == 0]
    assert float(first.std(axis=0).mean()) > 10


def test_input_spec_and_preprocess(val):
    assert SHAPES_INPUT == {"image": {"size": [64, 64], "channels": 3, "mean": SHAPES_MEAN, "std": SHAPES_STD}}
    x = preprocess(val[0][:8])
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.float32 and x.is_contiguous()
    manual = (val[0][3, 10, 20].astype(np.float64) / 255 - np.array(SHAPES_MEAN)) / np.array(SHAPES_STD)
    assert np.allclose(x[3, :, 10, 20].numpy(), manual, atol=1e-5)
    # the hard-coded statistics still describe the data (roughly: a smaller sample than training's)
    images, _ = generate_shapes(500, seed=5)
    pixels = images.reshape(-1, 3) / 255.0
    assert np.allclose(pixels.mean(0), SHAPES_MEAN, atol=0.03)
    assert np.allclose(pixels.std(0), SHAPES_STD, atol=0.03)


def test_model_architecture_has_no_normalization_or_dropout():
    model = ShapesCNN()
    kinds = {type(m) for m in model.modules()}
    assert not any(issubclass(k, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)) for k in kinds)
    assert all(not m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, K)


def test_weights_file_is_small_and_loads_strictly():
    assert SHAPES_WEIGHTS.stat().st_size < 3 * 1024 * 1024
    state = load_file(str(SHAPES_WEIGHTS))
    assert set(state) == set(ShapesCNN().state_dict())


def test_shipped_weights_accuracy_matches_report(val, predictions, report):
    accuracy = float((predictions == val[1]).mean())
    assert accuracy >= 0.95, accuracy
    assert abs(accuracy - report["val_accuracy"]) <= 0.01, (accuracy, report["val_accuracy"])
    assert report["classes"] == SHAPES_CLASSES


def test_every_class_is_mostly_right(val, predictions):
    labels = val[1]
    per_class = {SHAPES_CLASSES[k]: float((predictions[labels == k] == k).mean()) for k in range(K)}
    assert min(per_class.values()) >= 0.85, per_class

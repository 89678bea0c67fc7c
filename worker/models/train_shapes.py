"""Train the built-in `shapes-cnn` on CPU and write its weights and a training report.

    python -m worker.models.train_shapes            # train, accuracy_on on shapes-val, write files
    python -m worker.models.train_shapes --stats    # print the per-channel mean/std to hard-code

Deterministic: every epoch draws a fresh training set from SHAPES_TRAIN_SEED + epoch (so the
data itself is the augmentation), torch is seeded, deterministic algorithms are on, and torch
uses a fixed number of threads. Writes, next to this file:

    weights/shapes-cnn.safetensors   the state_dict (safetensors.torch.save_file)
    weights/shapes-cnn.json          the report: classes, seeds, sizes, val accuracy, time, ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from worker.models.shapes import (
    SHAPES_CLASSES,
    SHAPES_INPUT,
    SHAPES_MEAN,
    SHAPES_REPORT,
    SHAPES_STD,
    SHAPES_TRAIN_SEED,
    SHAPES_VAL_COUNT,
    SHAPES_VAL_SEED,
    SHAPES_WEIGHTS,
    ShapesCNN,
    generate_shapes,
    preprocess,
    shapes_val,
)

STATS_COUNT = 10000
EPOCHS = 5
PER_EPOCH = 6000
BATCH = 64
LR = 2e-3
WEIGHT_DECAY = 0.0
THREADS = 2


def channel_stats(count: int = STATS_COUNT, seed: int = SHAPES_TRAIN_SEED) -> tuple[list[float], list[float]]:
    images, _ = generate_shapes(count, seed)
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return [round(float(v), 4) for v in x.mean(0)], [round(float(v), 4) for v in x.std(0)]


@torch.no_grad()
def accuracy_on(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    model.eval()
    predicted = torch.cat([model(preprocess(images[i : i + 200])).argmax(1) for i in range(0, len(images), 200)])
    correct = (predicted.numpy() == labels)
    per_class = [float(correct[labels == k].mean()) for k in range(len(SHAPES_CLASSES))]
    return float(correct.mean()), per_class


def train(out_weights: Path = SHAPES_WEIGHTS, out_report: Path = SHAPES_REPORT) -> dict:
    torch.set_num_threads(THREADS)
    torch.manual_seed(SHAPES_TRAIN_SEED)
    np.random.seed(SHAPES_TRAIN_SEED % 2**32)
    torch.use_deterministic_algorithms(True)

    mean, std = channel_stats()
    if max(abs(a - b) for a, b in zip(mean + std, SHAPES_MEAN + SHAPES_STD)) > 2e-3:
        raise SystemExit(f"SHAPES_MEAN/STD are stale: data gives mean={mean} std={std}; update shapes.py")

    model = ShapesCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(PER_EPOCH / BATCH)
    total_steps = EPOCHS * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    val_images, val_labels = shapes_val()
    history = []
    started = time.perf_counter()
    for epoch in range(EPOCHS):
        images, labels = generate_shapes(PER_EPOCH, SHAPES_TRAIN_SEED + epoch)
        x_all, y_all = preprocess(images), torch.from_numpy(labels)
        model.train()
        loss_sum, correct = 0.0, 0
        for start in range(0, PER_EPOCH, BATCH):
            x, y = x_all[start : start + BATCH], y_all[start : start + BATCH]
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
        val_accuracy, _ = accuracy_on(model, val_images, val_labels)
        record = {
            "epoch": epoch + 1,
            "train_loss": round(loss_sum / PER_EPOCH, 5),
            "train_accuracy": round(correct / PER_EPOCH, 5),
            "val_accuracy": round(val_accuracy, 5),
            "seconds": round(time.perf_counter() - started, 1),
        }
        history.append(record)
        print(json.dumps(record), flush=True)
    training_seconds = time.perf_counter() - started

    val_accuracy, per_class = accuracy_on(model, val_images, val_labels)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    out_weights.parent.mkdir(parents=True, exist_ok=True)
    # one metadata key: safetensors writes its metadata map in arbitrary order, and a single key
    # keeps the file byte-identical between runs
    save_file(state, str(out_weights), metadata={"model": "shapes-cnn"})
    out_weights.chmod(0o644)  # safetensors writes 0600
    report = {
        "model": "shapes-cnn",
        "dataset": "shapes-val",
        "classes": SHAPES_CLASSES,
        "input": SHAPES_INPUT,
        "architecture": {name: list(t.shape) for name, t in state.items()},
        "parameters": int(sum(t.numel() for t in state.values())),
        "seed": SHAPES_TRAIN_SEED,
        "train_seeds": [SHAPES_TRAIN_SEED + e for e in range(EPOCHS)],
        "epochs": EPOCHS,
        "train_size_per_epoch": PER_EPOCH,
        "train_size": EPOCHS * PER_EPOCH,
        "batch_size": BATCH,
        "optimizer": {"name": "Adam", "lr": LR, "weight_decay": WEIGHT_DECAY, "schedule": "cosine to 0"},
        "val_seed": SHAPES_VAL_SEED,
        "val_count": SHAPES_VAL_COUNT,
        "val_accuracy": round(val_accuracy, 5),
        "val_per_class_accuracy": {name: round(a, 5) for name, a in zip(SHAPES_CLASSES, per_class)},
        "history": history,
        "training_seconds": round(training_seconds, 1),
        "torch_threads": THREADS,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "weights_file": out_weights.name,
        "weights_sha256": hashlib.sha256(out_weights.read_bytes()).hexdigest(),
        "weights_bytes": out_weights.stat().st_size,
    }
    out_report.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", action="store_true", help="print per-channel mean/std and exit")
    args = parser.parse_args(argv)
    if args.stats:
        torch.set_num_threads(THREADS)
        mean, std = channel_stats()
        print(json.dumps({"mean": mean, "std": std}))
        return
    report = train()
    print(
        f"val accuracy {report['val_accuracy']:.4f} in {report['training_seconds']} s; "
        f"wrote {SHAPES_WEIGHTS} ({report['weights_bytes']} bytes) and {SHAPES_REPORT}"
    )


if __name__ == "__main__":
    main()

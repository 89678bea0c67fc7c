"""Train the built-in tabular models and write their weights, reports and datasets.

    python -m worker.models.train_tabular

Writes, under ``worker/models/``:
    weights/retail-mlp.safetensors, weights/retail-mlp.json
    weights/diabetes-mlp.safetensors, weights/diabetes-mlp.json
    data/retail-sample.csv   (generate_retail(3000, seed=3): rows no model was fitted on)
    data/diabetes.csv        (all 442 patients, with the target column ``progression``)

Deterministic: fixed seeds, ``torch.manual_seed``, two CPU threads, full-precision float32.
Each model is an MLP fitted to the standardized target with Adam (L2 weight decay) and early
stopping on a validation split; the best-validation weights are kept and the target's
standardization is folded into the output layer, so output 0 is on the target's own scale
(retail: log1p(weekly_sales); diabetes: progression).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from worker.models import diabetes, retail
from worker.models.tabular import (
    TabularMLP,
    column_stats,
    encode_rows,
    encoded_columns,
    predict,
    regression_metrics,
    write_csv,
)

MODELS_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = MODELS_DIR / "weights"
DATA_DIR = MODELS_DIR / "data"

RETAIL_CONFIG = {
    "seed": 0,
    "hidden_sizes": [64, 32],
    "max_epochs": 200,
    "patience": 20,
    "batch_size": 256,
    "lr": 2e-3,
    "weight_decay": 1e-5,
}
DIABETES_CONFIG = {
    "seed": 0,
    "hidden_sizes": [32, 16],
    "max_epochs": 1000,
    "patience": 100,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 1e-2,
}


def check_manifest_stats(features: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> None:
    """The hard-coded means/stds must match the training rows up to their rounding."""
    for feature in features:
        if feature["type"] != "numeric":
            continue
        mean, std = column_stats(rows, feature["name"])
        if abs(mean - feature["mean"]) > 0.03 * std or abs(std - feature["std"]) > 0.03 * std:
            raise SystemExit(
                f"manifest stats of {feature['name']!r} ({feature['mean']}, {feature['std']}) no longer match "
                f"the training rows ({mean:.4g}, {std:.4g}); update the manifest"
            )


def fit_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: Mapping[str, Any],
    log_every: int = 0,
) -> tuple[TabularMLP, dict[str, Any]]:
    """Fit a TabularMLP (one output) with early stopping; return it with the target scale folded
    into its output layer, and a summary of the run."""
    torch.manual_seed(config["seed"])
    generator = torch.Generator().manual_seed(config["seed"])
    y_mean, y_std = float(y_train.mean()), float(y_train.std())
    model = TabularMLP(x_train.shape[1], 1, config["hidden_sizes"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(((y_train - y_mean) / y_std).astype(np.float32)).unsqueeze(1)
    xv = torch.from_numpy(x_val)
    yv = torch.from_numpy(((y_val - y_mean) / y_std).astype(np.float32)).unsqueeze(1)
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    epoch = 0
    for epoch in range(1, config["max_epochs"] + 1):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), config["batch_size"]):
            batch = order[start : start + config["batch_size"]]
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(torch.nn.functional.mse_loss(model(xv), yv))
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        if log_every and epoch % log_every == 0:
            print(f"  epoch {epoch:4d}  validation mse (standardized) {val_loss:.4f}  best {best_loss:.4f} @ {best_epoch}")
        if epoch - best_epoch >= config["patience"]:
            break
    model.load_state_dict(best_state)
    with torch.no_grad():  # output = standardized output * std + mean
        model.out.weight.mul_(y_std)
        model.out.bias.mul_(y_std).add_(y_mean)
    model.eval()
    return model, {
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "target_mean": y_mean,
        "target_std": y_std,
        "best_validation_mse_standardized": best_loss,
    }


def model_permutation_importance(
    model: TabularMLP, rows: Sequence[Mapping[str, Any]], features: Sequence[Mapping[str, Any]], seed: int = 0
) -> dict[str, float]:
    """Mean squared change of output 0 when each variable is shuffled across ``rows``."""
    return retail.permutation_importance(lambda rs: predict(model, encode_rows(rs, features)), rows,
                                         [f["name"] for f in features], seed=seed)


def save_model(model: TabularMLP, model_id: str, report: dict[str, Any]) -> None:
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    weights = WEIGHTS_DIR / f"{model_id}.safetensors"
    state = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
    save_file(state, str(weights), metadata={"model": model_id, "architecture": "glassbox/tabular-mlp",
                                             "hidden_sizes": ",".join(map(str, model.hidden_sizes))})
    weights.chmod(0o644)  # safetensors creates it owner-only; workers may run as another user
    report["weights"] = {"file": weights.name, "bytes": weights.stat().st_size,
                         "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (WEIGHTS_DIR / f"{model_id}.json").write_text(json.dumps(report, indent=2) + "\n")
    (WEIGHTS_DIR / f"{model_id}.json").chmod(0o644)


def _rounded(metrics: Mapping[str, float]) -> dict[str, float]:
    return {key: round(float(value), 6) for key, value in metrics.items()}


def _base_report(model_id: str, model: TabularMLP, config: Mapping[str, Any], features, summary) -> dict[str, Any]:
    return {
        "model": model_id,
        "kind": "tabular",
        "architecture": "glassbox/tabular-mlp",
        "n_inputs": model.n_inputs,
        "n_outputs": model.n_outputs,
        "hidden_sizes": list(model.hidden_sizes),
        "layers": model.layer_names(),
        "seed": config["seed"],
        "epochs": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "training": {
            "optimizer": "Adam",
            "lr": config["lr"],
            "weight_decay": config["weight_decay"],
            "weight_decay_kind": "L2 (torch.optim.Adam)",
            "batch_size": config["batch_size"],
            "max_epochs": config["max_epochs"],
            "early_stopping_patience": config["patience"],
            "target_standardization": {"mean": summary["target_mean"], "std": summary["target_std"],
                                       "folded_into": "out"},
            "torch": torch.__version__,
        },
        "features": [dict(f) for f in features],
        "encoded_columns": [list(c) for c in encoded_columns(features)],
    }


def train_retail(log_every: int = 0) -> dict[str, Any]:
    config = RETAIL_CONFIG
    features = retail.RETAIL_FEATURES
    splits = {
        "train": (retail.TRAIN_SEED, retail.TRAIN_COUNT),
        "validation": (retail.VALIDATION_SEED, retail.VALIDATION_COUNT),
        "test": (retail.TEST_SEED, retail.TEST_COUNT),
    }
    rows = {name: retail.generate_retail(count, seed) for name, (seed, count) in splits.items()}
    check_manifest_stats(features, rows["train"])
    x = {name: encode_rows(r, features) for name, r in rows.items()}
    y = {name: retail.retail_target(r) for name, r in rows.items()}
    model, summary = fit_mlp(x["train"], y["train"], x["validation"], y["validation"], config, log_every)
    metrics = {name: _rounded(regression_metrics(predict(model, x[name]), y[name])) for name in rows}
    names = [f["name"] for f in features]
    truth = retail.permutation_importance(retail.retail_log_mean, rows["test"], names)
    learned = model_permutation_importance(model, rows["test"], features)
    report = _base_report(retail.MODEL_ID, model, config, features, summary)
    report.update({
        "target": retail.RETAIL_TARGET,
        "output": {"index": 0, "meaning": retail.RETAIL_OUTPUT_MEANING, "target_transform": "log1p"},
        "metrics_scale": "log1p(weekly_sales)",
        "metrics": metrics,
        "data": {name: {"generator": "worker.models.retail.generate_retail", "seed": seed, "rows": count}
                 for name, (seed, count) in splits.items()},
        "documented_drivers": list(retail.RETAIL_DOCUMENTED_DRIVERS),
        "irrelevant": list(retail.RETAIL_IRRELEVANT),
        "permutation_importance_test": {
            "process": {k: round(v, 5) for k, v in truth.items()},
            "model": {k: round(v, 5) for k, v in learned.items()},
        },
    })
    save_model(model, retail.MODEL_ID, report)
    sample = retail.generate_retail(retail.SAMPLE_COUNT, retail.SAMPLE_SEED)
    write_csv(DATA_DIR / "retail-sample.csv", sample, retail.RETAIL_COLUMNS)
    return report


def train_diabetes(log_every: int = 0) -> dict[str, Any]:
    config = DIABETES_CONFIG
    features = diabetes.DIABETES_FEATURES
    all_rows = diabetes.load_diabetes_rows()
    indices = dict(zip(("train", "validation", "test"), diabetes.diabetes_split()))
    rows = {name: [all_rows[i] for i in idx] for name, idx in indices.items()}
    check_manifest_stats(features, rows["train"])
    x = {name: encode_rows(r, features) for name, r in rows.items()}
    y = {name: diabetes.diabetes_target(r) for name, r in rows.items()}
    model, summary = fit_mlp(x["train"], y["train"], x["validation"], y["validation"], config, log_every)
    metrics = {name: _rounded(regression_metrics(predict(model, x[name]), y[name])) for name in rows}
    # context: ordinary least squares on the same encoding and split
    from sklearn.linear_model import LinearRegression

    linear = LinearRegression().fit(x["train"], y["train"])
    baseline = {name: _rounded(regression_metrics(linear.predict(x[name]), y[name])) for name in rows}
    learned = model_permutation_importance(model, rows["test"], features)
    report = _base_report(diabetes.MODEL_ID, model, config, features, summary)
    report.update({
        "target": diabetes.DIABETES_TARGET,
        "output": {"index": 0, "meaning": diabetes.DIABETES_OUTPUT_MEANING, "target_transform": "none"},
        "metrics_scale": "progression",
        "metrics": metrics,
        "linear_regression_baseline": baseline,
        "data": {
            "source": "sklearn.datasets.load_diabetes(scaled=False)",
            "split": "numpy.random.default_rng(0).permutation(442): test = first 89, validation = next 66, "
                     "train = rest (worker.models.diabetes.diabetes_split)",
            **{name: {"rows": len(idx)} for name, idx in indices.items()},
        },
        "permutation_importance_test": {"model": {k: round(v, 3) for k, v in learned.items()}},
    })
    save_model(model, diabetes.MODEL_ID, report)
    write_csv(DATA_DIR / "diabetes.csv", all_rows, diabetes.DIABETES_COLUMNS)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["retail", "diabetes"], help="train just one model")
    parser.add_argument("--log-every", type=int, default=0, help="print validation loss every N epochs")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    for name, train in (("retail", train_retail), ("diabetes", train_diabetes)):
        if args.only and args.only != name:
            continue
        started = time.perf_counter()
        report = train(args.log_every)
        print(f"{report['model']}: {report['epochs']} epochs (best {report['best_epoch']}) in "
              f"{time.perf_counter() - started:.1f}s; metrics on {report['metrics_scale']}: "
              f"{json.dumps(report['metrics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

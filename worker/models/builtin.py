"""The models and datasets every deployment ships: trained here, weights committed.

- `shapes-cnn` (image): a small conv/ReLU/max-pool CNN over procedurally drawn shapes and
  textures (worker/models/shapes.py, trained by worker/models/train_shapes.py);
- `retail-mlp` (tabular): weekly sales of a retail store from named variables, on synthetic data
  whose generating process is documented (worker/models/retail.py);
- `diabetes-mlp` (tabular): disease progression on scikit-learn's bundled diabetes data, real
  data no one here generated (worker/models/diabetes.py);
both tabular ones trained by worker/models/train_tabular.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from worker.models import diabetes, retail, shapes
from worker.models.tabular import TabularMLP

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights"
DATA = HERE / "data"


@dataclass(frozen=True)
class BuiltinModel:
    id: str
    kind: str
    description: str
    input: dict[str, Any]
    build: Callable[[], nn.Module]  # the architecture, weights loaded, in eval mode
    labels: list[str] | None = None
    output: str | None = None

    def catalog_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.id,
            "kind": self.kind,
            "source": "builtin",
            "status": "available",
            "description": self.description,
            "input": self.input,
            "labels": self.labels,
            "output": self.output,
            "layers": None,
        }


def _tabular(model_id: str) -> nn.Module:
    report = json.loads((WEIGHTS / f"{model_id}.json").read_text())
    model = TabularMLP(report["n_inputs"], report["n_outputs"], report["hidden_sizes"])
    model.load_state_dict(load_file(str(WEIGHTS / f"{model_id}.safetensors")), strict=True)
    return model.eval()


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.id: model
    for model in (
        BuiltinModel(
            id="shapes-cnn",
            kind="image",
            description="A small CNN (conv/ReLU/max-pool blocks, then a classifier) trained on "
            "procedurally drawn shapes, colours, stripes and textures; early channels respond to "
            "colours and oriented edges, later ones to shapes. Pairs with dataset shapes-val.",
            input=shapes.SHAPES_INPUT,
            build=shapes.load_shapes_cnn,
            labels=list(shapes.SHAPES_CLASSES),
        ),
        BuiltinModel(
            id="retail-mlp",
            kind="tabular",
            description="Predicts a retail store's weekly sales of an item from its category, "
            "season, region, store size, price, discount, promotion, holiday week and temperature "
            "(synthetic data with a documented generating process). Pairs with retail-sample.",
            input={"tabular": {"features": retail.RETAIL_FEATURES}},
            build=lambda: _tabular("retail-mlp"),
            output=retail.RETAIL_OUTPUT_MEANING,
        ),
        BuiltinModel(
            id="diabetes-mlp",
            kind="tabular",
            description="Predicts diabetes progression after one year from age, sex, BMI, blood "
            "pressure and six blood serum measurements (scikit-learn's bundled diabetes data, "
            "442 patients). Pairs with dataset diabetes.",
            input={"tabular": {"features": diabetes.DIABETES_FEATURES}},
            build=lambda: _tabular("diabetes-mlp"),
            output=diabetes.DIABETES_OUTPUT_MEANING,
        ),
    )
}


def builtin_dataset_records() -> list[dict[str, Any]]:
    from service.uploads import check_csv

    records = [
        {
            "id": "shapes-val",
            "kind": "images",
            "source": "builtin",
            "description": "The validation split of shapes-cnn's procedural dataset "
            f"(seed {shapes.SHAPES_VAL_SEED}; classes: {', '.join(shapes.SHAPES_CLASSES)}).",
            "count": shapes.SHAPES_VAL_COUNT,
            "image_size": [shapes.SHAPES_SIZE, shapes.SHAPES_SIZE],
            "columns": None,
        }
    ]
    for dataset_id, description in (
        ("retail-sample", "Rows of retail-mlp's synthetic data (held-out seed), with weekly_sales."),
        ("diabetes", "scikit-learn's diabetes data (442 patients), with the target column progression."),
    ):
        summary = check_csv((DATA / f"{dataset_id}.csv").read_bytes())
        records.append(
            {
                "id": dataset_id,
                "kind": "table",
                "source": "builtin",
                "description": description,
                "count": summary.count,
                "image_size": None,
                "columns": summary.columns,
            }
        )
    return records

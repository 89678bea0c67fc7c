"""A unit's entry in atlas.json: its numbers from the activation index, its exemplars, what its
feature visualization scores, and its labels where the dataset has them."""

from __future__ import annotations

from collections import Counter
from typing import Any


def class_selectivity(class_means: list[float]) -> float | None:
    """Morcos et al. (2018): (mu_max - mu_rest) / (mu_max + mu_rest), mu_max the largest class
    mean, mu_rest the mean of the other classes' means; 0 for a unit that responds alike to
    every class, 1 for one that responds to one class only. Defined for activations >= 0 (a
    unit after a ReLU); None where it is not (a mean below zero, or every mean zero)."""
    if len(class_means) < 2 or min(class_means) < 0:
        return None
    ordered = sorted(class_means, reverse=True)
    top, rest = ordered[0], sum(ordered[1:]) / (len(ordered) - 1)
    return None if top + rest == 0 else (top - rest) / (top + rest)


def unit_entry(
    unit: int, channel: dict[str, Any], neurons: list, images, atlas, fv: dict | None, *, bottoms_info: list
) -> dict[str, Any]:
    """`channel`: the unit's entry of the index summary; `neurons`: its projected exemplars
    (worker/kinds/deconvnet/compute.ProjectedNeuron), strongest first."""
    maximum = channel["max"]
    top = [_exemplar(n.image_index, list(n.position), n.activation, list(n.receptive_field), images) for n in neurons]
    entry: dict[str, Any] = {
        "unit": unit,
        "dead": maximum is None or maximum <= 0.0,
        "max_activation": maximum,
        "mean_activation": channel["mean"],
        "std_activation": channel["std"],
        "fraction_positive": channel["fraction_positive"],
        "top": top,
        "bottom": [
            _exemplar(e["image_index"], e["position"], e["activation"], e["receptive_field"], images)
            for e in bottoms_info
        ]
        if atlas.bottom_k
        else None,
        "feature_visualization": None,
        "labels": _labels(channel, top, images),
        "images": {"exemplars": f"units/{unit}/exemplars.png", "best": f"units/{unit}/best.png" if top else None},
    }
    if fv is not None:
        ratio = fv["activation"] / maximum if maximum and maximum > 0 else None
        entry["feature_visualization"] = {
            "activation": fv["activation"], "ratio_to_dataset_max": ratio, "is_top_unit": fv["is_top_unit"],
            "dead": fv["dead"], "image": f"units/{unit}/fv.png",
        }  # fmt: skip
        entry["images"]["fv"] = f"units/{unit}/fv.png"
    return entry


def _exemplar(image: int, position: list[int], activation: float, field: list[int], images) -> dict[str, Any]:
    label = None
    if images.labels is not None and images.classes and image < len(images.labels) and images.labels[image] >= 0:
        label = images.classes[int(images.labels[image])]
    return {"image_index": int(image), "image_name": images.names[image], "label": label, "position": position,
            "activation": float(activation), "receptive_field": field}  # fmt: skip


def _labels(channel: dict[str, Any], top: list[dict[str, Any]], images) -> dict[str, Any] | None:
    classes = channel.get("classes")
    if not classes or not images.classes:
        return None
    seen = [c for c in classes if c["count"]]
    best = max(seen, key=lambda c: c["mean"], default=None)
    counted = Counter(e["label"] for e in top if e["label"] is not None)
    return {
        "top_classes": [{"label": label, "count": count} for label, count in counted.most_common()],
        "class_selectivity": class_selectivity([c["mean"] for c in seen]),
        "best_class": images.classes[best["class"]] if best else None,
        "best_class_mean": best["mean"] if best else None,
    }

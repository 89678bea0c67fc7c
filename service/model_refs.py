"""How a job names a model: parsing model references without torch (the API validates them).

- a built-in or uploaded model: its id, e.g. `shapes-cnn`;
- a torchvision classification architecture: `torchvision/<name>` with optional query
  `weights=default` (torchvision's pretrained weights, the default) or `weights=random` with
  `seed=<int>` (random initialization, reproducible), e.g. `torchvision/vgg16?weights=random&seed=0`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

TORCHVISION_PREFIX = "torchvision/"
WEIGHT_CHOICES = ("default", "random")


class ModelRefError(ValueError):
    pass


@dataclass(frozen=True)
class ModelRef:
    id: str  # the catalog id: without the query
    weights: str = "default"
    seed: int = 0

    @property
    def is_torchvision(self) -> bool:
        return self.id.startswith(TORCHVISION_PREFIX)

    @property
    def architecture(self) -> str:
        return self.id.removeprefix(TORCHVISION_PREFIX)

    @property
    def cache_key(self) -> str:
        if not self.is_torchvision:
            return self.id
        return f"{self.id}?weights={self.weights}" + (f"&seed={self.seed}" if self.weights == "random" else "")


def parse_model_ref(text: str) -> ModelRef:
    base, _, query = text.partition("?")
    if not base:
        raise ModelRefError("empty model id")
    if not base.startswith(TORCHVISION_PREFIX):
        if query:
            raise ModelRefError("only torchvision/<name> models take ?weights=...&seed=...")
        return ModelRef(base)
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    unknown = set(options) - {"weights", "seed"}
    if unknown:
        raise ModelRefError(f"unknown model option(s) {sorted(unknown)}; allowed: weights, seed")
    weights = options.get("weights", "default")
    if weights not in WEIGHT_CHOICES:
        raise ModelRefError(f"weights={weights!r}; allowed: {', '.join(WEIGHT_CHOICES)}")
    seed_text = options.get("seed")
    if seed_text is not None and weights != "random":
        raise ModelRefError("seed is for weights=random")
    try:
        seed = int(seed_text) if seed_text is not None else 0
    except ValueError as exc:
        raise ModelRefError(f"seed must be an integer, got {seed_text!r}") from exc
    if not 0 <= seed < 2**63:
        raise ModelRefError("seed must be between 0 and 2**63 - 1")
    return ModelRef(base, weights, seed)

"""Trust checks on image results: can a visualization or a projection be believed?

- path_similarity.py: Geirhos et al. (ICML 2024): does the network process a feature
  visualization like the natural images that excite the unit, layer by layer below it?
- randomization.py: Adebayo et al. (2018): does a projection change when the weights it passes
  through are randomized?
- correlation.py (Spearman/Pearson, batched) and ssim.py (Wang et al. 2004), which they share.

Pure PyTorch: no Redis, no HTTP. Each result has `to_dict()` (plain JSON data, with a
`definition` sentence) for result.json.
"""

from worker.core.trust.correlation import average_ranks, pearson_matrix, spearman_matrix, spearman_pairs
from worker.core.trust.path_similarity import (
    PathSimilarity,
    comparison_layers,
    layer_vectors,
    path_similarity,
    pooled,
)
from worker.core.trust.randomization import (
    FLAG_THRESHOLD,
    PairScores,
    ProjectionSimilarity,
    RandomizationCheck,
    control_neurons,
    map_scores,
    modules_below,
    parameterized_modules,
    projection_similarity,
    randomization_check,
    randomized_copy,
)
from worker.core.trust.ssim import normalize_maps, ssim

__all__ = [
    "FLAG_THRESHOLD",
    "PairScores",
    "PathSimilarity",
    "ProjectionSimilarity",
    "RandomizationCheck",
    "average_ranks",
    "comparison_layers",
    "control_neurons",
    "layer_vectors",
    "map_scores",
    "modules_below",
    "normalize_maps",
    "parameterized_modules",
    "path_similarity",
    "pearson_matrix",
    "pooled",
    "projection_similarity",
    "randomization_check",
    "randomized_copy",
    "spearman_matrix",
    "spearman_pairs",
    "ssim",
]

"""The trust panel's params: the checks a user can ask of an image result (the computations are
worker/core/trust). No torch here: the API imports this module."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_PATH_IMAGES = 64


class PathSimilaritySpec(BaseModel):
    """Geirhos et al. 2024's check of a feature visualization: does the network process it the
    way it processes the natural images that excite the unit?"""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Compute path similarity (needs `reference_dataset`: the exemplars and the random "
        "images come from it; without one the panel says so).",
    )
    exemplars: int = Field(default=8, ge=1, le=16, description="The unit's top natural exemplars compared with.")
    random_images: int = Field(
        default=16,
        ge=2,
        le=MAX_PATH_IMAGES,
        description="Random dataset images giving the baseline (drawn with `seed`).",
    )

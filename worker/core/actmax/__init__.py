"""Activation maximization, split as Lucid's optvis: objectives, param, transforms,
regularizers, and the render loop that knows none of their details.

Pure PyTorch: no Redis, no HTTP. `worker/kinds/activation_maximization/` adapts a job to it.
"""

from worker.core.actmax.objectives import Diversity, Objective, make_objective
from worker.core.actmax.param import ImageParam, make_param
from worker.core.actmax.regularizers import Regularizer, make_regularizers
from worker.core.actmax.render import (
    DeadObjective,
    ModelInput,
    RenderResult,
    measure_images,
    render,
    unit_maxima,
    unit_top,
)
from worker.core.actmax.transforms import Compose, make_transforms

__all__ = [
    "Compose",
    "DeadObjective",
    "Diversity",
    "ImageParam",
    "ModelInput",
    "Objective",
    "Regularizer",
    "RenderResult",
    "measure_images",
    "make_objective",
    "make_param",
    "make_regularizers",
    "make_transforms",
    "render",
    "unit_maxima",
    "unit_top",
]

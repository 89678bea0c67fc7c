"""A job kind for the tests of the job lifecycle only (loaded with GLASSBOX_PLUGINS).

It does no visualization: it advances through `steps` steps of `step_seconds` each, reporting
progress, and ends as `outcome` says, so that tests can drive every path of the lifecycle.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.jobspec import JobKind, fanout_step


class LifecycleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=10, ge=0, le=100_000)
    step_seconds: float = Field(default=0.05, ge=0, le=60)
    outcome: Literal["succeed", "fail", "raise", "device_error"] = "succeed"
    artifact_bytes: int = Field(default=1024, ge=0, le=50_000_000)


class LayerProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str
    units: list[int] = Field(default_factory=lambda: [0])
    position: list[int] | None = Field(default=None, min_length=2, max_length=2)


class FanOutParams(BaseModel):
    """test-fanout: `steps` steps on any worker, then a merge; step `flaky` raises `raises`
    times (counted in files under `counts`) before it succeeds."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=3, ge=1, le=50)
    flaky: int = Field(default=0, ge=0)
    raises: int = Field(default=0, ge=0)
    counts: str = ""


class FanOutStepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int
    raises: int = 0
    counts: str = ""


def check_layer_probe(params: LayerProbeParams, record: dict) -> None:
    from service.kinds.layers import check_position, check_units, find_layer

    layer = find_layer(record, params.layer, ["body", "params", "layer"])
    if layer is not None:
        check_units(layer, params.units, ["body", "params", "units"])
        if params.position is not None:
            check_position(layer, params.position, ["body", "params", "position"])


# A model record for the lifecycle kind to name; it loads nothing.
MODELS = [{"id": "test-model", "kind": "test", "description": "Test-only placeholder for the lifecycle kind"}]

JOB_KINDS = [
    JobKind(
        name="test-lifecycle",
        params_model=LifecycleParams,
        handler="tests.plugins.lifecycle_tasks:run_lifecycle",
        description="Test-only: steps, progress and a chosen outcome.",
    ),
    JobKind(
        name="test-layer-probe",
        params_model=LayerProbeParams,
        handler="tests.plugins.lifecycle_tasks:run_layer_probe",
        description="Test-only: submit-time layer and unit checks.",
        check=check_layer_probe,
    ),
    JobKind(
        name="test-fanout",
        params_model=FanOutParams,
        handler="tests.plugins.lifecycle_tasks:run_fanout",
        description="Test-only: a fan-out of steps and a merge.",
    ),
    fanout_step("test-fanout-step", FanOutStepParams, "tests.plugins.lifecycle_tasks:run_fanout_step", "Test-only: one step."),
    fanout_step("test-fanout-merge", FanOutParams, "tests.plugins.lifecycle_tasks:run_fanout_merge", "Test-only: the merge."),
]

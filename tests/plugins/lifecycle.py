"""A job kind for the tests of the job lifecycle only (loaded with GLASSBOX_PLUGINS).

It does no visualization: it advances through `steps` steps of `step_seconds` each, reporting
progress, and ends as `outcome` says, so that tests can drive every path of the lifecycle.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.jobspec import JobKind


class LifecycleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=10, ge=0, le=100_000)
    step_seconds: float = Field(default=0.05, ge=0, le=60)
    outcome: Literal["succeed", "fail", "raise", "device_error"] = "succeed"
    artifact_bytes: int = Field(default=1024, ge=0, le=50_000_000)


# A model record for the lifecycle kind to name; it loads nothing.
MODELS = [{"id": "test-model", "kind": "test", "description": "Test-only placeholder for the lifecycle kind"}]

JOB_KINDS = [
    JobKind(
        name="test-lifecycle",
        params_model=LifecycleParams,
        handler="tests.plugins.lifecycle_tasks:run_lifecycle",
        description="Test-only: steps, progress and a chosen outcome.",
    )
]

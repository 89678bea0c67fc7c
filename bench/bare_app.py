"""The baseline for bench.backbone: a FastAPI endpoint that returns a constant, with nothing
else (no middleware, no Redis), served by uvicorn with the same options as `glassbox api`."""

from fastapi import FastAPI

app = FastAPI()

CONSTANT = {"id": "0" * 26, "status": "succeeded"}


@app.get("/v1/jobs/{job_id}")
async def get_constant(job_id: str) -> dict[str, str]:
    return CONSTANT

"""The baseline for bench.backbone and bench.scaling: FastAPI endpoints that return constants,
with nothing else (no middleware, no Redis), served by uvicorn with the same options as
`glassbox api`. Each mirrors the shape of one Glassbox operation so that a latency can be read
as a ratio against the framework's own floor."""

from fastapi import FastAPI, Request, Response

app = FastAPI()

CONSTANT = {"id": "0" * 26, "status": "succeeded"}
ARTIFACT_BYTES = 65536
ARTIFACT = bytes(range(256)) * (ARTIFACT_BYTES // 256)


@app.get("/v1/jobs/{job_id}")
async def get_constant(job_id: str) -> dict[str, str]:
    return CONSTANT


@app.post("/v1/jobs", status_code=202)
async def create_constant(request: Request) -> dict[str, str]:
    await request.json()  # a create parses its body, so the baseline does too
    return CONSTANT


@app.get("/v1/jobs/{job_id}/artifacts/{name}")
async def download_constant(job_id: str, name: str) -> Response:
    return Response(ARTIFACT, media_type="application/octet-stream")

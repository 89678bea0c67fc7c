"""Regenerates the pictures of the README's walk-through (docs/images/*.png).

    uv run python docs/readme_images.py

Starts a private redis-server, the API and one worker, runs the walk-through's jobs with the
Python client, saves their figures as they are (they are drawn to be read at their size: a
resampled figure blurs its enlarged pixels), and takes a screenshot of the web page (scaled down)
with Debian's chromium when it is installed; then an atlas of shapes-cnn `features.11` and
screenshots of its web view (the grid, and the page of its strongest unit).

    uv run python docs/readme_images.py --only atlas     # the atlas pictures alone
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.processes import Processes, free_port, wait_http  # noqa: E402
from service.client import Client  # noqa: E402

IMAGES = ROOT / "docs" / "images"
SCREENSHOT_WIDTH = 900

WALK_THROUGH = [
    ("deconvnet", "shapes-cnn", {"layer": "features.6", "dataset": "shapes-val", "top_channels": 4, "top_k": 6}, "grid.png", "deconvnet-grid.png"),
    ("activation_maximization", "shapes-cnn", {"objective": {"type": "class", "units": list(range(10))}, "reference_dataset": "shapes-val"}, "grid.png", "actmax-grid.png"),
    ("tabular_attribution", "retail-mlp", {"dataset": "retail-sample", "sample": 200, "method": "kernel_shap"}, "importance.png", "tabular-importance.png"),
]


def save(data: bytes, name: str, max_width: int | None = None) -> None:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    image.save(IMAGES / name, format="PNG", optimize=True)
    print(f"wrote docs/images/{name} ({(IMAGES / name).stat().st_size} bytes)")


ATLAS = ("shapes-cnn", {"layer": "features.11", "dataset": "shapes-val"})


def screenshots(base_url: str, pages: list[tuple[str, str]]) -> None:
    """(path, picture name) of each page, after it has had time to load its pictures."""
    if not Path("/usr/bin/chromium").exists():
        print("no /usr/bin/chromium: skipping the page screenshots")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for path, name in pages:
            page.goto(f"{base_url}{path}")
            page.wait_for_timeout(5000)
            save(page.screenshot(full_page=False), name, SCREENSHOT_WIDTH)
        browser.close()


def atlas_pages(client: Client) -> list[tuple[str, str]]:
    model, params = ATLAS
    job = client.wait(client.submit("atlas", model, params).id, timeout=1800)
    if job.status != "succeeded":
        raise RuntimeError(f"atlas: {job.error}")
    atlas = client.http.get(f"/v1/jobs/{job.id}/artifacts/atlas.json").json()
    strongest = atlas["orders"]["max_activation"][0]
    return [(f"/atlas/{job.id}", "atlas-grid.png"), (f"/atlas/{job.id}/units/{strongest}", "atlas-unit.png")]


def main() -> int:
    only_atlas = sys.argv[1:] == ["--only", "atlas"]
    IMAGES.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="glassbox-readme-"))
    procs = Processes(log_dir)
    redis_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env["GLASSBOX_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    redis_server = shutil.which("redis-server") or "redis-server"
    try:
        procs.start("redis", [redis_server, "--port", str(redis_port), "--save", "", "--appendonly", "no"], env)
        procs.start("api", [sys.executable, "-m", "service.cli", "api", "--port", str(api_port), "--no-access-log"], env)
        procs.start("worker", [sys.executable, "-m", "service.cli", "worker"], env)
        base = f"http://127.0.0.1:{api_port}"
        wait_http(f"{base}/livez", procs)
        while httpx.get(f"{base}/readyz").status_code != 200:
            procs.check_alive()
            time.sleep(0.2)
        with Client(base) as client:
            kinds = {k["name"] for k in client.http.get("/v1/kinds").json()}
            first = None
            for kind, model, params, artifact, name in [] if only_atlas else WALK_THROUGH:
                if kind not in kinds:
                    print(f"kind {kind} is not installed: skipping {name}")
                    continue
                job = client.wait(client.submit(kind, model, params).id, timeout=900)
                if job.status != "succeeded":
                    raise RuntimeError(f"{kind}: {job.error}")
                first = first or job.id
                ref = next(a for a in job.result.artifacts if a.name == artifact)
                save(client.http.get(ref.url).content, name)
            pages = [(f"/#job={first}", "web-page.png")] if first else []
            if "atlas" in kinds:
                pages += atlas_pages(client)
        screenshots(base, pages)
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())

"""What the web page tests share: a browser, a stack, a tab on the page, a job served by routes.

Debian's chromium (/usr/bin/chromium, installed by CI) through Playwright's Python package; no
downloaded browser. Authentication is on, so every tab starts at the page's key prompt. Tests
take full-page screenshots into test-artifacts/ (git-ignored), kept as artifacts of the run.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.plugins import load_plugins
from service.settings import Settings
from tests.conftest import ALICE, REPO, TEST_KINDS_PLUGIN, Stack

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1400, 900
KEY_MISSING = "Send `Authorization: Bearer <api key>`."
KEY_INVALID = "The API key is not valid."
# Job kinds being integrated: loaded as plugins here while they are not built in yet, and only
# when the worker side exists.
OPTIONAL_KINDS = {
    "tabular_attribution": ("service.kinds.tabular_attribution", "worker.kinds.tabular_attribution"),
    "activation_maximization": ("service.kinds.activation_maximization", "worker.kinds.activation_maximization"),
}

NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (CI installs it: apt-get install chromium)"
)


def until(page, expression: str, timeout: float = 20) -> None:
    """Wait until a JavaScript expression is true (as a function: the page's CSP forbids eval)."""
    page.wait_for_function(f"() => ({expression})", timeout=timeout * 1000)


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _runnable(kind: str) -> bool:
    service_module, worker_module = OPTIONAL_KINDS[kind]
    return module_exists(service_module) and module_exists(worker_module)


@pytest.fixture(scope="package")
def web_stack(redis_url, tmp_path_factory) -> Iterator[Stack]:
    built_in = set(load_plugins(Settings(plugins=[])).kinds)
    plugins = [TEST_KINDS_PLUGIN]
    for kind, (service_module, _) in OPTIONAL_KINDS.items():
        if kind not in built_in and _runnable(kind):
            plugins.append(service_module)
    stack = Stack(redis_url, tmp_path_factory.mktemp("logs"), plugins=",".join(plugins))
    stack.start_api()
    stack.start_worker()
    yield stack
    stack.stop()


@pytest.fixture(scope="package")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Tab:
    """One browser tab on the page, with what it sent and what went wrong in it."""

    def __init__(self, page, stack: Stack):
        self.page = page
        self.stack = stack
        self.urls: list[str] = []
        self.event_stream_headers: list[dict[str, str]] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        # Chromium logs every 4xx answer (the 401 that opens the key prompt, a refused job);
        # anything else on the error console (a CSP violation, a script error) is a failure.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def _request(self, request) -> None:
        self.urls.append(request.url)
        if request.url.endswith("/events"):
            self.event_stream_headers.append(request.headers)

    def open(self, key: str = ALICE, wrong_key_first: bool = False) -> None:
        page = self.page
        page.goto(self.stack.base_url + "/")
        page.wait_for_selector("#key-dialog[open]")
        assert page.text_content("#key-reason") == KEY_MISSING
        if wrong_key_first:
            page.fill("#key-input", "not-a-key")
            page.press("#key-input", "Enter")
            until(page, f"document.querySelector('#key-reason').textContent === {json.dumps(KEY_INVALID)}")
            assert page.is_visible("#key-dialog")
        page.fill("#key-input", key)
        page.press("#key-input", "Enter")
        self.wait_ready()

    def start(self, model: str, kind: str | None = None, layer: str | None = None, unit: int | None = None):
        """Open the page with the key, then choose the model, kind, layer and unit; the page."""
        self.open()
        self.choose_model(model)
        if kind is not None:
            self.choose_kind(kind)
        if layer is not None:
            self.page.click(f'#layer-table tr[data-layer="{layer}"]')
        if unit is not None:
            self.page.fill("#unit-input", str(unit))
        return self.page

    def wait_ready(self) -> None:
        self.page.wait_for_selector("body[data-ready=true]")
        self.page.wait_for_selector("#model-select option", state="attached")

    def choose_model(self, model_id: str) -> None:
        self.page.select_option("#model-select", model_id)
        until(self.page, f"document.body.dataset.model === {json.dumps(model_id)}")

    def choose_kind(self, kind: str) -> None:
        self.page.select_option("#kind-select", kind)

    def param(self, name: str, value: str) -> None:
        locator = self.page.locator(f'.param-field[data-param="{name}"] :is(input, select)')
        if locator.evaluate("el => el.tagName") == "SELECT":
            locator.select_option(value)
        else:
            locator.fill(value)

    def submit(self) -> str:
        self.page.click("#submit-job")
        until(self.page, "document.querySelector('#job-id').textContent.length > 0")
        return self.page.text_content("#job-id")

    def wait_status(self, status: str, timeout: float = 60) -> None:
        """Wait until the job shown ends (or reaches `status`), and say why if it ended otherwise."""
        ends = ", ".join(f"#job-status[data-status={s}]" for s in {status, "succeeded", "failed", "canceled"})
        self.page.wait_for_selector(ends, timeout=timeout * 1000)
        shown = self.page.get_attribute("#job-status", "data-status")
        if shown != status:
            self.screenshot("failure")
            problem = self.page.text_content("#job-problem") or ""
            raise AssertionError(f"job {self.page.text_content('#job-id')} is {shown}, not {status}: {problem}")

    def wait_images_loaded(self, selector: str) -> int:
        """Wait until every image matched has loaded (naturalWidth > 0); returns how many."""
        self.page.wait_for_function(
            f"""() => {{
                const images = [...document.querySelectorAll({json.dumps(selector)})];
                return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);
            }}""",
            timeout=30_000,
        )
        return self.page.locator(selector).count()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"web-{name}.png"
        self.page.wait_for_timeout(300)  # let the progress bar's transition end
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_key_kept_out_of_urls(self) -> None:
        assert self.urls and not [u for u in self.urls if ALICE in u]


@contextmanager
def open_tab(browser, stack: Stack) -> Iterator[Tab]:
    """A tab in a fresh browser context; it fails if the page logged an error meanwhile."""
    context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT})
    page = context.new_page()
    page.set_default_timeout(20_000)
    opened = Tab(page, stack)
    yield opened
    context.close()
    assert not opened.errors, opened.errors


@pytest.fixture
def tab(browser, web_stack) -> Iterator[Tab]:
    with open_tab(browser, web_stack) as opened:
        yield opened


def job_and_result(stack: Stack, job_id: str) -> tuple[dict, dict]:
    with stack.client() as client:
        job = client.get(f"/v1/jobs/{job_id}").json()
        result = client.get(f"/v1/jobs/{job_id}/artifacts/result.json").json()
    return job, result


def shown_number(text: str) -> float:
    return float(text.strip())


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


FAKE_JOB_ID = "0" * 22 + "fake"


def serve_fake_job(page, kind: str, blobs: dict[str, tuple[str, bytes]], params: dict | None = None) -> list[tuple[str, str | None]]:
    """Route a job (FAKE_JOB_ID) that runs, reports progress and succeeds with `blobs` as its
    artifacts ({name: (content type, bytes)}), whether or not this build's worker runs the kind.
    Returns the (url, Authorization header) of every request the routes answered."""
    refs = [
        {"name": n, "content_type": t, "bytes": len(b), "sha256": "0" * 64, "url": f"/v1/jobs/{FAKE_JOB_ID}/artifacts/{n}"}
        for n, (t, b) in blobs.items()
    ]
    running = {
        "id": FAKE_JOB_ID, "kind": kind, "model": "shapes-cnn", "status": "running",
        "progress": {"fraction": 0.5, "message": "halfway"}, "params": params or {}, "metadata": {},
        "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:01Z", "attempts": 1, "timeout_seconds": 60,
    }  # fmt: skip
    done = {**running, "status": "succeeded", "progress": {"fraction": 1.0, "message": "done"},
            "finished_at": "2026-01-01T00:00:05Z", "result": {"artifacts": refs, "summary": {"artifacts": len(refs)}}}  # fmt: skip
    seen: list[tuple[str, str | None]] = []

    def serve(route) -> None:
        url = route.request.url
        seen.append((url, route.request.headers.get("authorization")))
        if url.endswith("/events"):
            stream = "".join(
                f"event: {event}\ndata: {json.dumps(data)}\n\n"
                for event, data in (("status", running), ("progress", {"fraction": 0.75, "message": "nearly"}), ("status", done))
            )
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=": hello\n\n" + stream)
        elif "/artifacts/" in url:
            content_type, body = blobs[url.rsplit("/", 1)[1]]
            route.fulfill(status=200, headers={"content-type": content_type}, body=body)
        else:
            route.fulfill(status=200, headers={"content-type": "application/json"}, body=json.dumps(done))

    page.route(f"**/v1/jobs/{FAKE_JOB_ID}**", serve)
    page.evaluate(f"location.hash = '#job={FAKE_JOB_ID}'")
    return seen

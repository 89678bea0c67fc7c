"""The page in a new user's first hour (issue 12): opened before the worker is up, /docs with no
internet, a form that shows only what applies, a result that leaves the history in reach, and
what a job costs before it is submitted.
"""

from __future__ import annotations

import json

import httpx
import pytest

from service.plugins import load_plugins
from service.settings import Settings
from tests.conftest import ALICE
from tests.web.conftest import NEEDS_CHROMIUM, VIEWPORT_HEIGHT, open_tab, png, serve_fake_job, until

pytestmark = NEEDS_CHROMIUM


def visible_params(page, selector: str) -> list[str]:
    return page.locator(f"{selector} .param-field:visible").evaluate_all("els => els.map((e) => e.dataset.param)")


def test_a_page_opened_before_the_worker_registered_the_models_fills_in_by_itself(browser, make_stack):
    stack = make_stack(workers=0)
    with open_tab(browser, stack) as tab:
        page = tab.page
        page.goto(stack.base_url + "/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key-input", ALICE)
        page.press("#key-input", "Enter")
        # It says what the service waits for, in /readyz's words.
        page.wait_for_selector("#service-wait", state="visible")
        readyz = httpx.get(stack.base_url + "/readyz")
        assert readyz.status_code == 503
        until(page, f"document.querySelector('#service-wait-detail').textContent === {json.dumps(readyz.json()['detail'])}")
        assert page.locator("#model-select option").count() == 0
        assert page.is_disabled("#submit-job")
        tab.screenshot("waiting-for-the-worker")

        stack.start_worker()
        page.wait_for_selector("#service-wait", state="hidden", timeout=60_000)
        assert page.is_enabled("#submit-job")
        until(page, "document.body.dataset.model === 'shapes-cnn'")
        with stack.client() as client:
            models = {m["id"] for m in client.get("/v1/models").json()}
            layers = client.get("/v1/models/shapes-cnn").json()["layers"]
        shown = page.locator("#model-select option").evaluate_all("options => options.map((o) => o.value)")
        assert set(shown) == models
        assert page.input_value("#kind-select") == "deconvnet"  # never model_inspection for an image model
        assert page.locator("#layer-table tbody tr").count() == len(layers)
        page.click('#layer-table tr[data-layer="features.6"]')
        assert page.input_value('.param-field[data-param="layer"] input') == "features.6"
        assert page.input_value('.param-field[data-param="dataset"] input') == "shapes-val"


def test_api_docs_render_every_operation_with_no_internet(browser, web_stack):
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []

    def only_this_service(route) -> None:
        if route.request.url.startswith(web_stack.base_url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_service)
    try:
        page.goto(web_stack.base_url + "/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        shown = page.locator(".opblock").evaluate_all(
            "blocks => blocks.map((b) => [b.querySelector('.opblock-summary-method').textContent,"
            " b.querySelector('.opblock-summary-path').dataset.path])"
        )
    finally:
        context.close()
    document = httpx.get(web_stack.base_url + "/openapi.json").json()
    assert document["openapi"].startswith("3.1")  # the API's own document is unchanged
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert ("POST", "/v1/jobs") in operations
    assert {tuple(s) for s in shown} == operations
    assert outside == []
    assert httpx.get(web_stack.base_url + "/redoc").status_code == 404


def test_the_objective_shows_the_fields_of_its_type_and_marks_the_required_ones(tab):
    params_model = load_plugins(Settings(plugins=[])).kinds["activation_maximization"].params_model
    page = tab.start("shapes-cnn", "activation_maximization", layer="features.6", unit=3)
    fillers = {"objective.layer": "features.6", "objective.units": "3", "objective.vector": "1, 0.5"}
    for objective_type in ("neuron", "channel", "layer", "class", "direction"):
        tab.param("objective.type", objective_type)
        fields = [p for p in visible_params(page, 'fieldset[data-param="objective"]') if p != "objective.type"]
        required = []
        for name in fields:
            field = page.locator(f'.param-field[data-param="{name}"]')
            marked = field.locator(".required").is_visible()
            assert not (marked and field.locator("input").get_attribute("placeholder") == "optional"), name
            if marked:
                required.append(name)
                if not field.locator("input").input_value():
                    tab.param(name, fillers[name])
        # The kind's own validator: what the page sends is accepted, and each field marked
        # required is needed; fields shown are the type's (class-only ones only for class).
        body = json.loads(page.text_content("#request-preview"))
        objective = body["params"]["objective"]
        params_model.model_validate(body["params"])
        for name in required:
            key = name.split(".", 1)[1]
            without = {k: v for k, v in objective.items() if k != key}
            with pytest.raises(ValueError):
                params_model.model_validate({**body["params"], "objective": without})
        shown = {name.split(".", 1)[1] for name in fields}
        assert ({"softmax_weight", "softmax_start"} <= shown) == (objective_type == "class")
        assert ("vector" in shown) == (objective_type == "direction")
        assert ("position" in shown) == (objective_type in ("neuron", "direction"))
        assert ("units" in shown) == (objective_type in ("neuron", "channel", "class"))
        assert set(objective) - {"type"} <= shown


def deconvnet_blobs(channels: list[int], top_k: int, without_patch: set[int]) -> tuple[list[dict], dict]:
    """A default-sized deconvnet result (8 channels x top 9) shaped as the contract says: one
    projection PNG and, beside it, one image patch PNG per projection (some missing here)."""
    items = [
        {"index": c * top_k + k, "channel": channel, "activation": 10.0 - k / 10, "position": [k, c],
         "image_name": f"{k:04d}-shape.png", "image_index": k}
        for c, channel in enumerate(channels) for k in range(top_k)
    ]  # fmt: skip
    blobs = {"grid.png": ("image/png", png(1800, 2200, (200, 200, 200)))}
    for item in items:
        blobs[f"projection-{item['index']:03d}.png"] = ("image/png", png(96, 96, (120, 40, 160)))
        if item["index"] not in without_patch:
            blobs[f"patch-{item['index']:03d}.png"] = ("image/png", png(96, 96, (40, 160, 120)))
    result = {"layer": "features.6", "layer_shape": [32, 32, 32], "method": "deconvnet", "channels": channels,
              "channel_max_activation": {str(c): 10.0 for c in channels}, "items": items}  # fmt: skip
    blobs["result.json"] = ("application/json", json.dumps(result).encode())
    return items, blobs


def test_a_deconvnet_result_is_compact_with_each_projection_beside_its_patch(tab):
    items, blobs = deconvnet_blobs(channels=[3, 5, 7, 11, 13, 17, 19, 23], top_k=9, without_patch={4, 40})
    tab.open()
    page = tab.page
    serve_fake_job(page, "deconvnet", blobs, params={"layer": "features.6"})
    tab.wait_status("succeeded")
    assert tab.wait_images_loaded("#result img") == 1 + len(items) * 2 - 2
    for item in items:
        number = f"{item['index']:03d}"
        card = page.locator(f'.item-card[data-index="{item["index"]}"]')
        boxes = card.locator("img").evaluate_all(
            "images => images.map((i) => { const r = i.getBoundingClientRect();"
            " return {name: i.dataset.artifact, left: r.left, right: r.right, top: r.top, width: r.width}; })"
        )
        if item["index"] in (4, 40):
            assert [b["name"] for b in boxes] == [f"projection-{number}.png"]
            continue
        projection, patch = boxes
        assert (projection["name"], patch["name"]) == (f"projection-{number}.png", f"patch-{number}.png")
        assert patch["left"] >= projection["right"] and abs(patch["top"] - projection["top"]) < 1
        assert projection["width"] >= 48 and patch["width"] >= 48  # legible, not 12 px
    assert page.locator("#result .img-error").count() == 0
    # 72 projections, 144 PNGs and a tall figure: the history still starts within two screens.
    history_top = page.evaluate("document.querySelector('#history-title').getBoundingClientRect().top + scrollY")
    tab.screenshot("deconvnet-compact")
    assert history_top <= 2 * VIEWPORT_HEIGHT


def estimate_route(page, answer):
    """Answer POST /v1/jobs/estimate with answer(body); returns the bodies it was sent."""
    bodies: list[dict] = []

    def serve(route) -> None:
        body = json.loads(route.request.post_data)
        bodies.append(body)
        status, reply = answer(body)
        content_type = "application/json" if status == 200 else "application/problem+json"
        route.fulfill(status=status, headers={"content-type": content_type}, body=json.dumps(reply))

    page.route("**/v1/jobs/estimate", serve)
    return bodies


def test_the_form_shows_what_the_job_would_cost_before_it_is_submitted(tab):
    def answer(body: dict) -> tuple[int, dict]:
        top_k = body["params"].get("top_k", 9)
        gpu = None if top_k == 4 else 3.46
        return 200, {"kind": body["kind"], "seconds": {"cpu": 4.2 * top_k, "gpu": gpu}, "basis": "a test's figures"}

    bodies = estimate_route(tab.page, answer)
    page = tab.start("shapes-cnn", layer="features.6")

    def estimated_as_previewed() -> bool:
        """The last estimate asked is for the body the page shows (a form being filled asks
        several times: the one that counts is the last)."""
        for _ in range(200):
            if bodies and bodies[-1] == json.loads(page.text_content("#request-preview")):
                return True
            page.wait_for_timeout(100)
        return False

    assert estimated_as_previewed()
    # 4.2 x 9 = 37.8 s and 3.46 s, as a person reads them.
    until(page, "document.querySelector('#estimate').textContent === 'about 38 s on a CPU worker (3.5 s on a GPU)'")
    tab.param("top_k", "4")  # 16.8 s, and no GPU figure
    assert estimated_as_previewed()
    until(page, "document.querySelector('#estimate').textContent === 'about 17 s on a CPU worker'")
    assert page.is_visible("#estimate")


@pytest.mark.parametrize("status", [404, 405])
def test_a_service_without_estimates_shows_none_and_no_error(tab, status):
    bodies = estimate_route(tab.page, lambda body: (status, {"title": "Not Found", "status": status}))
    page = tab.start("shapes-cnn", layer="features.6")
    page.wait_for_selector("body[data-estimate=unsupported]")
    assert bodies  # it asked, once the form was filled
    tab.param("top_k", "4")
    assert not page.is_visible("#estimate") and not page.is_visible("#app-error") and not page.is_visible("#submit-problem")


def test_the_estimate_shown_is_the_services_own(tab, web_stack):
    body = {"kind": "deconvnet", "model": "shapes-cnn", "params": {"layer": "features.6", "dataset": "shapes-val"}}
    with web_stack.client() as client:
        response = client.post("/v1/jobs/estimate", json=body)
    if response.status_code in (404, 405):
        pytest.skip("this build has no POST /v1/jobs/estimate yet")
    assert response.status_code == 200, response.text
    seconds = response.json()["seconds"]
    page = tab.start("shapes-cnn", layer="features.6")
    assert json.loads(page.text_content("#request-preview")) == body
    page.wait_for_selector("#estimate", state="visible")
    shown = float(page.get_attribute("#estimate", "data-cpu"))
    assert shown == pytest.approx(seconds["cpu"])
    assert "on a CPU worker" in page.text_content("#estimate")
    assert ("on a GPU" in page.text_content("#estimate")) == (seconds["gpu"] is not None)
    # A kind without a cost model (404 no-estimate) shows none, and estimates go on for the others.
    with web_stack.client() as client:
        lifecycle = client.post("/v1/jobs/estimate", json={"kind": "test-lifecycle", "model": "test-model", "params": {}})
    assert lifecycle.status_code == 404 and lifecycle.json()["type"].endswith("/no-estimate")
    tab.choose_model("test-model")
    tab.choose_kind("test-lifecycle")
    page.wait_for_selector("body[data-estimate=none]")
    assert not page.is_visible("#estimate")
    tab.choose_model("shapes-cnn")
    tab.choose_kind("deconvnet")
    page.click('#layer-table tr[data-layer="features.6"]')
    page.wait_for_selector("body[data-estimate=shown]")
    assert float(page.get_attribute("#estimate", "data-cpu")) == pytest.approx(seconds["cpu"])

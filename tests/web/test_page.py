"""The web page at `/`, driven in headless Chromium against a real API and worker: each job
kind from the form to its result, the history, errors as the API words them.

Fixtures and the tab are in tests/web/conftest.py.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.conftest import ALICE
from tests.web.conftest import NEEDS_CHROMIUM, job_and_result, module_exists, png, serve_fake_job, shown_number, until

pytestmark = NEEDS_CHROMIUM


def test_the_page_is_served_with_its_files_outside_the_api_document(web_stack):
    index = httpx.get(web_stack.base_url + "/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    for name, media in (("app.js", "javascript"), ("app.css", "text/css")):
        response = httpx.get(f"{web_stack.base_url}/static/{name}")
        assert response.status_code == 200 and media in response.headers["content-type"]
    assert httpx.get(web_stack.base_url + "/static/nothing.js").status_code == 404
    paths = httpx.get(web_stack.base_url + "/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_deconvnet_from_key_prompt_through_progress_to_the_result(tab, web_stack):
    tab.open(wrong_key_first=True)
    page = tab.page
    assert page.evaluate("sessionStorage.getItem('glassbox.apiKey')") == ALICE
    tab.choose_model("shapes-cnn")
    page.click('#layer-table tr[data-layer="features.6"]')
    assert page.input_value('.param-field[data-param="layer"] input') == "features.6"
    assert page.input_value('.param-field[data-param="dataset"] input') == "shapes-val"
    assert page.input_value('.param-field[data-param="top_k"] input') == "9"  # the schema's default
    tab.param("top_channels", "3")
    tab.param("top_k", "4")
    job_id = tab.submit()
    tab.wait_status("succeeded")

    # Progress came through the event stream, read with the key in a header, never in a URL.
    assert page.get_attribute("#job-progress", "data-fraction") == "1"
    assert page.text_content("#progress-message").startswith("100%")
    assert tab.event_stream_headers and all(h.get("authorization") == f"Bearer {ALICE}" for h in tab.event_stream_headers)
    tab.assert_key_kept_out_of_urls()

    # The grid first, then every projection with its numbers, as result.json says.
    assert tab.wait_images_loaded("#result figure.grid img") == 1
    assert page.locator("#result img").first.get_attribute("data-artifact") == "grid.png"
    _, result = job_and_result(web_stack, job_id)
    items = result["items"]
    assert tab.wait_images_loaded('#result .item-card img[data-artifact^="projection-"]') == len(items) == 12
    for item in items:
        card = page.locator(f'.item-card[data-index="{item["index"]}"]')
        assert card.get_attribute("data-channel") == str(item["channel"])
        activation = card.locator('[data-field="activation"]').text_content()
        assert shown_number(activation) == pytest.approx(item["activation"], rel=1e-3)
        assert card.locator('[data-field="position"]').text_content() == f"({item['position'][0]}, {item['position'][1]})"
        assert item["image_name"] in card.text_content()
    channels = [int(c) for c in page.locator(".channel-row").evaluate_all("rows => rows.map((r) => r.dataset.channel)")]
    assert channels == result["channels"]
    assert page.locator(f'#history-table tr[data-job-id="{job_id}"][data-status="succeeded"]').count() == 1
    # Where the job's time went, in words and milliseconds, not as the summary's JSON.
    job, _ = job_and_result(web_stack, job_id)
    timings = job["result"]["summary"]["timings"]
    labels = {"queue wait": "queue_wait_seconds", "load": "load_seconds", "compute": "compute_seconds",
              "artifacts": "artifacts_seconds", "on the worker": "worker_seconds"}  # fmt: skip
    shown = [part.rsplit(" ", 2) for part in page.text_content('dd[data-summary="timings"]').split(" · ")]
    assert [label for label, _, _ in shown] == list(labels)
    for label, value, unit in shown:
        seconds = float(value) / 1000 if unit == "ms" else float(value)
        assert unit == ("ms" if timings[labels[label]] < 1 else "s")
        assert seconds == pytest.approx(timings[labels[label]], abs=0.0051 if unit == "s" else 0.00051)
    tab.screenshot("deconvnet")

    # The key is kept for the tab: a reload asks nothing and reopens the job from the URL.
    page.reload()
    tab.wait_ready()
    assert not page.is_visible("#key-dialog")
    assert tab.wait_images_loaded("#result figure.grid img") == 1
    tab.assert_key_kept_out_of_urls()


def test_model_inspection_lists_the_layers_of_a_torchvision_model(tab, web_stack):
    page = tab.start("torchvision/squeezenet1_1")
    assert page.is_visible("#inspect-model")
    assert page.locator("#layer-table tbody tr").count() == 0
    page.select_option("#weights-select", "random")
    page.fill("#weights-seed", "0")
    page.click("#inspect-model")
    tab.wait_status("succeeded", timeout=90)
    job_id = page.text_content("#job-id")
    job, result = job_and_result(web_stack, job_id)
    assert job["kind"] == "model_inspection" and job["model"] == "torchvision/squeezenet1_1?weights=random&seed=0"
    assert page.text_content('#result [data-fact="layers"]') == str(result["layers"])
    assert page.locator("#result tr[data-layer]").count() == len(result["layer_list"]) == result["layers"]
    # The model's layers are now browsable where they were missing.
    until(page, f"document.querySelectorAll('#layer-table tbody tr').length === {result['layers']}")
    assert not page.is_visible("#inspect-model")
    first = result["layer_list"][0]
    row = page.locator("#layer-table tbody tr").first
    assert row.get_attribute("data-layer") == first["name"]
    assert " × ".join(map(str, first["output_shape"])) in row.text_content()
    tab.screenshot("model_inspection")


def start_tabular(tab, web_stack):
    """The page on retail-mlp (a deployment without the tabular kind skips the test)."""
    with web_stack.client() as client:
        kinds = {k["name"] for k in client.get("/v1/kinds").json()}
    if "tabular_attribution" not in kinds:
        pytest.skip("the tabular_attribution kind is not installed in this deployment")
    return tab.start("retail-mlp")


def test_tabular_attribution_shows_the_importance_chart_and_a_sortable_table(tab, web_stack):
    page = start_tabular(tab, web_stack)
    assert page.input_value("#kind-select") == "tabular_attribution"
    assert page.input_value('.param-field[data-param="dataset"] input') == "retail-sample"
    tab.param("sample", "8")
    job_id = tab.submit()
    tab.wait_status("succeeded")
    assert tab.wait_images_loaded('#result figure[data-artifact="importance.png"] img') == 1
    assert page.locator("#result img").first.get_attribute("data-artifact") == "importance.png"
    _, result = job_and_result(web_stack, job_id)
    rows = result["rows"]
    assert page.locator("table.attributions tbody tr").count() == len(rows) == 8
    for row in rows:
        shown = page.locator(f'table.attributions tr[data-row="{row["index"]}"]')
        residual = shown.locator('[data-col="residual"]').text_content()
        assert shown_number(residual) == pytest.approx(row["residual"], rel=1e-3, abs=1e-9)
        for variable, value in row["attributions"].items():
            cell = shown.locator(f'[data-col="var:{variable}"]').text_content()
            assert shown_number(cell) == pytest.approx(value, rel=1e-3, abs=1e-9)
    top = result["ranking"][0]
    page.click(f'table.attributions th[data-sort="var:{top}"] button')
    order = [int(i) for i in page.locator("table.attributions tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.row)")]
    assert order == [r["index"] for r in sorted(rows, key=lambda r: -r["attributions"][top])]
    page.click(f'table.attributions th[data-sort="var:{top}"] button')
    assert page.get_attribute(f'table.attributions th[data-sort="var:{top}"]', "aria-sort") == "ascending"
    tab.screenshot("tabular_attribution")


def test_shapley_interactions_show_the_pair_matrix_the_top_pairs_and_the_pair_view(tab, web_stack):
    page = start_tabular(tab, web_stack)
    page.evaluate("document.querySelector('#more-fields').open = true")
    tab.param("method", "shapley_interactions")
    tab.param("sample", "40")
    job_id = tab.submit()
    tab.wait_status("succeeded")
    assert tab.wait_images_loaded('#result figure[data-artifact="interactions.png"] img') == 1
    assert tab.wait_images_loaded('#result figure[data-artifact="pair_view.png"] img') == 1
    _, result = job_and_result(web_stack, job_id)
    listed = page.locator("table.pairs tbody tr")
    assert listed.count() == 10
    for position, entry in enumerate(result["global_interactions"][:10]):
        line = listed.nth(position)
        assert line.get_attribute("data-pair") == "|".join(entry["variables"])
        assert shown_number(line.locator("td.num").first.text_content()) == pytest.approx(entry["mean_abs"], rel=1e-3)
    a, b = result["pair"]["variables"]
    assert page.text_content('[data-section="pair"] h3') == f"{a} × {b}"
    strongest = page.locator("table.pair-rows tbody tr").evaluate_all("rows => rows.map((r) => Number(r.dataset.row))")
    assert strongest == [row["index"] for row in result["pair"]["strongest_rows"]]
    row_chart = f"interactions_row_{result['rows'][0]['index']}.png"
    assert tab.wait_images_loaded(f'#result figure[data-artifact="{row_chart}"] img') == 1
    assert page.locator('#result figure[data-artifact^="waterfall_"]').count() == 0
    tab.screenshot("tabular_interactions")


def test_activation_maximization_shows_the_grid_then_each_image_with_its_numbers(tab, web_stack):
    with web_stack.client() as client:
        kinds = {k["name"] for k in client.get("/v1/kinds").json()}
    if "activation_maximization" not in kinds or not module_exists("worker.kinds.activation_maximization"):
        pytest.skip("the activation_maximization kind is not installed in this deployment")
    page = tab.start("shapes-cnn", "activation_maximization", layer="features.6", unit=3)
    tab.param("objective.type", "channel")
    assert page.input_value('.param-field[data-param="objective.layer"] input') == "features.6"
    assert page.input_value('.param-field[data-param="objective.units"] input') == "3"
    tab.param("steps", "24")
    tab.param("size", "64")
    job_id = tab.submit()
    tab.wait_status("succeeded", timeout=90)
    assert tab.wait_images_loaded("#result figure.grid img") == 1
    _, result = job_and_result(web_stack, job_id)
    images = result["images"]
    assert tab.wait_images_loaded("#result .item-card img") == len(images)
    for i, image in enumerate(images):
        card = page.locator(".item-card").nth(i)
        assert shown_number(card.locator('[data-field="activation"]').text_content()) == pytest.approx(image["activation"], rel=1e-3)
        if image.get("ratio_to_dataset_max") is not None:
            ratio = card.locator('[data-field="ratio_to_dataset_max"]').text_content()
            assert shown_number(ratio) == pytest.approx(image["ratio_to_dataset_max"], rel=1e-3)
    tab.screenshot("activation_maximization")


def test_a_running_job_is_canceled_then_deleted_from_the_history(tab, web_stack):
    from playwright.sync_api import expect

    page = tab.start("test-model", "test-lifecycle")
    tab.param("steps", "600")
    tab.param("step_seconds", "0.05")
    job_id = tab.submit()
    # The bar moves with the stream's progress events.
    until(
        page,
        "Number(document.querySelector('#job-progress').dataset.events) >= 2 && "
        "Number(document.querySelector('#job-progress').dataset.fraction) > 0",
    )
    row = page.locator(f'#history-table tr[data-job-id="{job_id}"]')
    row.locator('[data-action="cancel"]').click()
    tab.wait_status("canceled")
    page.wait_for_selector(f'#history-table tr[data-job-id="{job_id}"][data-status="canceled"]')
    with web_stack.client() as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"
    tab.screenshot("history")
    delete = row.locator('[data-action="delete"]')
    delete.click()
    expect(delete).to_have_text("Confirm delete")
    delete.click()
    page.wait_for_selector(f'#history-table tr[data-job-id="{job_id}"]', state="detached")
    assert page.is_visible("#job-empty")  # the job shown was the one deleted
    with web_stack.client() as client:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_api_errors_are_shown_as_the_api_worded_them(tab, web_stack):
    page = tab.start("shapes-cnn", layer="features.6")
    tab.param("top_k", "600")
    body = json.loads(page.text_content("#request-preview"))
    assert body == {"kind": "deconvnet", "model": "shapes-cnn", "params": {"layer": "features.6", "dataset": "shapes-val", "top_k": 600}}
    with web_stack.client() as client:
        problem = client.post("/v1/jobs", json=body).json()
    page.click("#submit-job")
    box = page.locator("#submit-problem")
    box.wait_for()
    assert box.locator(".problem-title").text_content().startswith(problem["title"])
    assert box.locator(".problem-detail").text_content() == problem["detail"]
    assert box.locator(".problem-errors li").all_text_contents() == [
        f"{'.'.join(map(str, e['loc']))} {e['msg']}" for e in problem["errors"]
    ]
    field = page.locator('.param-field[data-param="top_k"]')
    assert "invalid" in field.get_attribute("class")
    assert field.locator(".field-error").text_content() == problem["errors"][0]["msg"]

    # A check the API makes against the model: an unknown layer lists the valid ones.
    tab.param("top_k", "4")
    tab.param("layer", "features.40")
    with web_stack.client() as client:
        unknown = client.post("/v1/jobs", json=json.loads(page.text_content("#request-preview"))).json()
    assert "features.6" in unknown["detail"]
    page.click("#submit-job")
    until(page, f"document.querySelector('#submit-problem .problem-detail')?.textContent === {json.dumps(unknown['detail'])}")
    assert re.search(r"\b422\b", box.locator(".problem-title").text_content())


def test_the_activation_maximization_view_shows_what_the_contract_gives(tab, web_stack):
    """The view alone, fed by a routed job whose artifacts are shaped as the contract says
    (grid.png, one PNG per image, images.npy, result.json with images[].activation and
    ratio_to_dataset_max), whether or not this build's worker runs the kind."""
    images = [
        {"index": 0, "unit": 3, "label": None, "copy": 0, "png": "image-000.png", "activation": 12.3456,
         "robust_activation": 11.0, "dataset_max": 10.0, "dataset_max_image": "0193-red-circle.png",
         "ratio_to_dataset_max": 1.23456, "is_top_unit": True, "top_unit": 3, "top_label": None, "dead": False,
         "history": [0.1, 2.0, 7.5, 12.3456]},
        {"index": 1, "unit": 7, "label": None, "copy": 0, "png": "image-001.png", "activation": 0.004321,
         "robust_activation": 0.004, "dataset_max": 8.0, "dataset_max_image": "0007-green-square.png",
         "ratio_to_dataset_max": 0.00054, "is_top_unit": False, "top_unit": 2, "top_label": None, "dead": False,
         "history": [0.0, 0.002, 0.004321]},
    ]  # fmt: skip
    blobs = {
        "grid.png": ("image/png", png(260, 130, (200, 120, 40))),
        "image-000.png": ("image/png", png(64, 64, (40, 120, 200))),
        "image-001.png": ("image/png", png(64, 64, (40, 200, 120))),
        "images.npy": ("application/octet-stream", b"\x93NUMPY"),
        "result.json": ("application/json", json.dumps({"objective": {"type": "channel", "layer": "features.6"}, "images": images}).encode()),
    }
    tab.open()
    page = tab.page
    seen = serve_fake_job(page, "activation_maximization", blobs, params={"steps": 16})
    tab.wait_status("succeeded")
    assert tab.wait_images_loaded("#result figure.grid img") == 1
    assert page.locator("#result img").first.get_attribute("data-artifact") == "grid.png"
    assert tab.wait_images_loaded("#result .item-card img") == 2
    for i, image in enumerate(images):
        card = page.locator(".item-card").nth(i)
        assert card.locator("img").get_attribute("data-artifact") == f"image-00{i}.png"
        assert card.locator('[data-field="unit"]').text_content() == str(image["unit"])
        for field in ("activation", "robust_activation", "dataset_max", "ratio_to_dataset_max"):
            assert shown_number(card.locator(f'[data-field="{field}"]').text_content()) == pytest.approx(image[field], rel=1e-3)
        assert card.locator('[data-field="is_top_unit"]').text_content() == ("yes" if image["is_top_unit"] else "no (2)")
        assert image["dataset_max_image"] in card.text_content()
        assert card.locator("svg.sparkline").count() == 1
    assert seen and all(key == f"Bearer {ALICE}" for _, key in seen)
    tab.screenshot("activation_maximization-view")

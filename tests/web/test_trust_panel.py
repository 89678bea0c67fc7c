"""The trust panel, the feature accentuation figure and MACO's transparency in the web page, on
a real job (MACO from a seed image, with a reference dataset): the numbers shown are
result.json's."""

from __future__ import annotations

import pytest

from tests.web.conftest import NEEDS_CHROMIUM, job_and_result, until

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]


def js_fmt(value: float) -> str:
    """dom.js `fmt` for numbers between 1e-3 and 1e6 in size: 4 significant digits, no trailing zeros."""
    text = repr(float(f"{value:.4g}"))
    return text[:-2] if text.endswith(".0") else text


def test_an_image_result_shows_its_trust_panel_accentuation_and_transparency(tab, web_stack):
    params = {
        "objective": {"type": "channel", "layer": "features.11", "units": [3, 52]},
        "parameterization": "maco",
        "init": {"dataset": "shapes-val", "index": 7},
        "reference_dataset": "shapes-val",
        "steps": 8,
        "size": 64,
    }
    with web_stack.client() as client:
        created = client.post("/v1/jobs", json={"kind": "activation_maximization", "model": "shapes-cnn", "params": params})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        web_stack.wait_status(client, job_id, {"succeeded", "failed"}, timeout=240)
    tab.open()
    page = tab.page
    page.evaluate(f"location.hash = '#job={job_id}'")
    tab.wait_status("succeeded", timeout=60)
    until(page, "document.querySelector('.trust-panel') !== null")
    _, result = job_and_result(web_stack, job_id)
    path = page.locator('.trust-check[data-check="path_similarity"]')
    flagged = any(image["path_flagged"] for image in result["images"])
    assert path.get_attribute("data-flagged") == ("true" if flagged else "false")
    for image in result["images"]:
        assert js_fmt(image["path_similarity"]) in path.text_content()
    seed = page.locator('.trust-check[data-check="distance_to_seed"]')
    assert result["accentuation"]["seed"]["image"] in seed.text_content()
    assert tab.wait_images_loaded('#result img[data-artifact="accentuation.png"]') == 1
    assert tab.wait_images_loaded('#result img[data-artifact$="-alpha.png"]') == 2
    cards = page.locator(".item-card")
    for i, image in enumerate(result["images"]):
        shown = cards.nth(i).locator('[data-field="path_similarity"]').get_attribute("data-value")
        assert float(shown) == pytest.approx(image["path_similarity"], rel=1e-6)
    tab.screenshot("trust-panel")

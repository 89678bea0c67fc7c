"""The atlas view (/atlas/<job id>, /atlas/<job id>/units/<n>) in headless Chromium against a
real API and worker: the grid, a unit's page, links that open either directly, the back button,
sorting as atlas.json's orders say, the dead and label filters, and a 512-unit layer that asks
only for the thumbnails in sight. The atlas jobs are written into the job store as the atlas's
assembly writes them (tests/web/synthetic_atlas.py): no atlas is rendered here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import ALICE, Stack, wait_until
from tests.web.conftest import NEEDS_CHROMIUM, Tab, open_tab, until
from tests.web.synthetic_atlas import AtlasJobs, atlas_document

pytestmark = NEEDS_CHROMIUM

UNIT_PICTURES = "/artifacts/units/"


@dataclass
class Site:
    stack: Stack
    jobs: AtlasJobs
    small: dict  # atlas.json of a 12-unit atlas
    small_id: str
    big: dict  # atlas.json of a 512-unit atlas
    big_id: str
    other_id: str  # a finished job that is not an atlas
    running_id: str  # an atlas job still running (finished by its test)


@pytest.fixture(scope="module")
def site(redis_url, tmp_path_factory) -> Iterator[Site]:
    """An API whose store holds the atlas jobs, then a worker (started after them: it finds their
    queue entries already settled, and registers the models the job forms need)."""
    stack = Stack(redis_url, tmp_path_factory.mktemp("logs"))
    stack.start_api()
    jobs = AtlasJobs(stack)
    small, big = atlas_document(12, top_k=3), atlas_document(512, top_k=2, shape=(512, 8, 8), seed=1)
    try:
        with jobs.alive():
            ids = [jobs.finished(small), jobs.finished(big), jobs.finished(small, kind="deconvnet")]
            running = jobs.started(small)
            stack.start_worker()
            with stack.client() as client:
                wait_until(
                    lambda: client.get("/v1/models/shapes-cnn").status_code == 200, timeout=60, what="shapes-cnn"
                )
            yield Site(stack, jobs, small, ids[0], big, ids[1], ids[2], running)
    finally:
        stack.stop()
        jobs.close()


@pytest.fixture
def tab(browser, site) -> Iterator[Tab]:
    with open_tab(browser, site.stack) as opened:
        yield opened


def open_atlas(tab: Tab, path: str, view: str = "grid") -> None:
    """Open an atlas URL in a fresh tab: the key prompt first, then the view it names."""
    page = tab.page
    page.goto(tab.stack.base_url + path)
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", ALICE)
    page.press("#key-input", "Enter")
    page.wait_for_selector(f"body[data-view={view}]", timeout=30_000)


def tile_order(page) -> list[int]:
    return page.locator("#unit-grid .unit-tile").evaluate_all("tiles => tiles.map((t) => Number(t.dataset.unit))")


def path_of(page) -> str:
    return page.evaluate("location.pathname + location.search")


def test_atlas_urls_serve_the_page_and_nothing_else(site):
    base = site.stack.base_url
    for path in (f"/atlas/{site.small_id}", f"/atlas/{site.small_id}/units/3"):
        response = httpx.get(base + path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert '<script type="module" src="/static/atlas.js">' in response.text
    for name in ("atlas.js", "atlas_grid.js", "atlas_unit.js", "atlas_images.js", "atlas_jobs.js", "atlas.css"):
        assert httpx.get(f"{base}/static/{name}").status_code == 200
    assert httpx.get(f"{base}/atlas/{site.small_id}/units/three").status_code == 422
    assert httpx.get(f"{base}/atlas/{site.small_id}/units/-1").status_code in (404, 422)
    assert not [p for p in httpx.get(base + "/openapi.json").json()["paths"] if p.startswith("/atlas")]


def test_grid_to_a_unit_and_back(tab, site):
    page, atlas = tab.page, site.small
    open_atlas(tab, f"/atlas/{site.small_id}")
    order = atlas["orders"]["max_activation"]
    assert tile_order(page) == order  # the default sort: strongest first
    assert tab.wait_images_loaded("#unit-grid .unit-tile img") == 12
    dead = {u["unit"] for u in atlas["units"] if u["dead"]}
    shown_dead = page.locator('.unit-tile[data-dead="true"]').evaluate_all(
        "ts => ts.map((t) => Number(t.dataset.unit))"
    )
    assert set(shown_dead) == dead and page.locator(".unit-tile .dead-badge").count() == len(dead) > 0
    assert page.text_content('#atlas-facts [data-fact="dead"]') == str(len(dead))

    chosen = order[1]
    page.click(f'.unit-tile[data-unit="{chosen}"]')
    page.wait_for_selector(f"body[data-view=unit][data-unit='{chosen}']")
    assert path_of(page) == f"/atlas/{site.small_id}/units/{chosen}"
    entry = next(u for u in atlas["units"] if u["unit"] == chosen)
    assert_unit_page(tab, entry)
    assert page.text_content("#unit-position").startswith("2 of 12 by max activation")
    tab.screenshot("atlas-unit")

    page.go_back()
    page.wait_for_selector("body[data-view=grid]")
    assert path_of(page) == f"/atlas/{site.small_id}"
    assert page.evaluate("document.body.dataset.unit") is None and tile_order(page) == order
    page.go_forward()
    page.wait_for_selector(f"body[data-view=unit][data-unit='{chosen}']")

    # Next and previous follow the grid's order; the keys do too.
    page.click("#next-unit")
    page.wait_for_selector(f"body[data-unit='{order[2]}']")
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f"body[data-unit='{chosen}']")
    page.click("#back-to-grid")
    page.wait_for_selector("body[data-view=grid]")
    assert path_of(page) == f"/atlas/{site.small_id}"
    tab.screenshot("atlas-grid")


def assert_unit_page(tab: Tab, entry: dict) -> None:
    page, unit = tab.page, entry["unit"]
    assert page.text_content("#unit-title").startswith(f"Unit {unit}")
    for field in ("max_activation", "mean_activation", "std_activation", "fraction_positive"):
        shown = page.get_attribute(f'#unit-body dd[data-field="{field}"]', "data-value")
        assert float(shown) == pytest.approx(entry[field])
    assert shown_value(page, '#unit-body [data-field="ratio_to_dataset_max"]') == approx_or_none(
        entry["feature_visualization"]["ratio_to_dataset_max"]
    )
    assert shown_value(page, '[data-field="class_selectivity"]') == approx_or_none(entry["labels"]["class_selectivity"])
    assert page.text_content('[data-field="best_class"]') == entry["labels"]["best_class"]
    shown_classes = page.locator(".top-classes li").evaluate_all("items => items.map((i) => i.dataset.label)")
    assert shown_classes == [c["label"] for c in entry["labels"]["top_classes"]]
    rows = page.locator("#top-exemplars tbody tr")
    assert rows.count() == len(entry["top"])
    for i, exemplar in enumerate(entry["top"]):
        row = rows.nth(i)
        assert exemplar["image_name"] in row.text_content()
        assert row.locator('[data-field="label"]').text_content() == exemplar["label"]
        assert float(row.locator('[data-field="activation"]').get_attribute("data-value")) == pytest.approx(
            exemplar["activation"]
        )
    assert tab.wait_images_loaded(f'#unit-body img[data-artifact^="units/{unit}/"]') == 3  # fv, best, exemplars
    natural = page.locator(f'img[data-artifact="units/{unit}/exemplars.png"]').evaluate(
        "i => [i.naturalWidth, i.naturalHeight]"
    )
    assert natural == [len(entry["top"]) * 66 - 2, 130]
    assert (page.locator(".unit-head .dead-badge").count() == 1) == entry["dead"]
    text = page.text_content("#unit-body")
    assert "null" not in text and "undefined" not in text and "NaN" not in text


def shown_value(page, selector: str) -> float | None:
    value = page.get_attribute(selector, "data-value")
    return None if value is None else float(value)


def approx_or_none(value: float | None):
    return None if value is None else pytest.approx(value)


def test_a_unit_permalink_opens_directly(tab, site):
    page = tab.page
    open_atlas(tab, f"/atlas/{site.small_id}/units/5", view="unit")
    assert page.evaluate("document.body.dataset.unit") == "5"
    assert_unit_page(tab, site.small["units"][5])
    page.reload()
    page.wait_for_selector("body[data-view=unit][data-unit='5']")
    assert not page.is_visible("#key-dialog")  # the key is kept for the tab
    # No grid came before it: the link to the grid opens one, and back returns to the unit.
    page.click("#back-to-grid")
    page.wait_for_selector("body[data-view=grid]")
    assert tile_order(page) == site.small["orders"]["max_activation"]
    page.go_back()
    page.wait_for_selector("body[data-view=unit][data-unit='5']")
    # A unit the atlas does not have is said so.
    page.goto(f"{site.stack.base_url}/atlas/{site.small_id}/units/99")
    page.wait_for_selector("body[data-view=unit][data-unit='99']")
    assert "Unit 99 is not one of the 12 units" in page.text_content("#unit-body .problem")
    tab.assert_key_kept_out_of_urls()


def test_sorting_follows_the_orders_and_the_filters_narrow_the_grid(tab, site):
    page, atlas = tab.page, site.small
    units = {u["unit"]: u for u in atlas["units"]}
    open_atlas(tab, f"/atlas/{site.small_id}")
    for key in ("mean_activation", "class_selectivity", "feature_visualization", "max_activation"):
        page.select_option("#sort-select", key)
        assert tile_order(page) == atlas["orders"][key]
        assert page.evaluate("document.body.dataset.sort") == key
    values = [units[n]["max_activation"] for n in tile_order(page)]
    assert values == sorted(values, reverse=True) and len(set(tile_order(page))) == 12
    page.select_option("#sort-select", "unit")
    assert tile_order(page) == list(range(12))
    # The pictures: feature visualizations first, or each unit's strongest exemplar.
    page.select_option("#thumb-select", "best")
    until(
        page,
        "[...document.querySelectorAll('.unit-tile img')].every((i) => (i.dataset.artifact || '').endsWith('/best.png') && i.naturalWidth === 64)",
    )
    page.select_option("#thumb-select", "fv")

    # The sort is in the URL: a reload or a shared link shows the same order.
    page.select_option("#sort-select", "mean_activation")
    assert path_of(page) == f"/atlas/{site.small_id}?sort=mean_activation"
    page.reload()
    page.wait_for_selector("body[data-view=grid]")
    assert tile_order(page) == atlas["orders"]["mean_activation"]

    page.select_option("#dead-select", "dead")
    assert tile_order(page) == [n for n in atlas["orders"]["mean_activation"] if units[n]["dead"]] == [3, 10]
    page.select_option("#dead-select", "live")
    assert tile_order(page) == [n for n in atlas["orders"]["mean_activation"] if not units[n]["dead"]]
    assert page.text_content("#grid-count") == "10 of 12 units"
    page.select_option("#dead-select", "all")

    labels = page.locator("#label-select option").evaluate_all("os => os.map((o) => o.value).filter(Boolean)")
    assert labels and set(labels) <= {"circle", "square", "triangle", "star"}
    for label in labels:
        page.select_option("#label-select", label)
        expected = [n for n in atlas["orders"]["mean_activation"]
                    if label in (units[n]["labels"]["best_class"], units[n]["labels"]["top_classes"][0]["label"])]  # fmt: skip
        assert tile_order(page) == expected and 0 < len(expected) < 12
    assert "label=" in path_of(page)
    # A unit opened from a filtered grid steps through that grid only.
    first, second = tile_order(page)[:2]
    page.click(f'.unit-tile[data-unit="{first}"]')
    page.wait_for_selector(f"body[data-view=unit][data-unit='{first}']")
    assert page.get_attribute("#next-unit", "data-unit") == str(second)
    page.go_back()
    page.wait_for_selector("body[data-view=grid]")
    assert page.input_value("#label-select") == labels[-1]


def test_a_512_unit_layer_asks_only_for_the_thumbnails_in_sight(tab, site):
    page, atlas = tab.page, site.big
    started = time.monotonic()
    open_atlas(tab, f"/atlas/{site.big_id}")
    shown_after = time.monotonic() - started
    assert page.locator("#unit-grid .unit-tile").count() == 512
    # Every tile in the window gets its picture; none far below it is asked for.
    near = """(margin) => [...document.querySelectorAll('#unit-grid .unit-tile')]
        .filter((t) => t.getBoundingClientRect().top < innerHeight + margin).map((t) => t.dataset.unit)"""
    in_window = page.evaluate(near, 0)
    until(
        page,
        f"{json.dumps(in_window)}.every((n) => document.querySelector(`.unit-tile[data-unit='${{n}}'] img`).naturalWidth > 0)",
        timeout=30,
    )
    page.wait_for_timeout(500)
    requested = {u.split(UNIT_PICTURES)[1].split("/")[0] for u in tab.urls if UNIT_PICTURES in u}
    allowed = set(page.evaluate(near, 200 + 150))  # the observer's margin, and a row for the fonts' settling
    assert set(in_window) <= requested <= allowed, (len(in_window), len(requested), len(allowed))
    assert len(requested) < 160, len(requested)
    assert shown_after < 20, shown_after

    # Sorting 512 tiles is quick, and the page still answers.
    took = page.evaluate("""() => {
        const select = document.querySelector('#sort-select');
        const started = performance.now();
        select.value = 'mean_activation';
        select.dispatchEvent(new Event('change'));
        return performance.now() - started;
    }""")
    assert tile_order(page) == atlas["orders"]["mean_activation"]
    assert took < 1000, took

    # At the bottom, the last tiles load; most of the layer never was asked for.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    last = atlas["orders"]["mean_activation"][-1]
    until(page, f"document.querySelector(`.unit-tile[data-unit='{last}'] img`).naturalWidth > 0", timeout=30)
    fetched = {u.split(UNIT_PICTURES)[1].split("/")[0] for u in tab.urls if UNIT_PICTURES in u}
    assert len(fetched) < 400, len(fetched)
    scrolled = page.evaluate("window.scrollY")
    page.click(f'.unit-tile[data-unit="{last}"]')
    page.wait_for_selector(f"body[data-view=unit][data-unit='{last}']")
    assert page.evaluate("window.scrollY") == 0
    assert tab.wait_images_loaded(f'#unit-body img[data-artifact^="units/{last}/"]') == 3
    # Back: the grid where it was left, its pictures at once (kept, not fetched again).
    before = len(tab.urls)
    page.go_back()
    page.wait_for_selector("body[data-view=grid]")
    assert scrolled > 0 and abs(page.evaluate("window.scrollY") - scrolled) <= 1
    until(page, f"document.querySelector(`.unit-tile[data-unit='{last}'] img`).naturalWidth > 0")
    assert not [u for u in tab.urls[before:] if UNIT_PICTURES in u]
    print(
        f"512 units: grid shown {shown_after:.1f} s after opening, {len(requested)} thumbnails asked for, sorted in {took:.0f} ms"
    )
    tab.screenshot("atlas-512")


def test_an_atlas_still_running_shows_its_progress_then_the_grid(tab, site):
    page = tab.page
    open_atlas(tab, f"/atlas/{site.running_id}", view="loading")
    page.wait_for_selector("#atlas-status.status-running")
    shown = "document.querySelector('#atlas-loading-text').textContent.includes('50% · chunk 1 of 2')"
    for _ in range(40):  # reported again until seen: the page may subscribe after the first report
        site.jobs.runs.report_progress(site.running_id, "test-atlas-writer", 0.5, "chunk 1 of 2")
        if page.evaluate(f"() => {shown}"):
            break
        page.wait_for_timeout(500)
    until(page, shown)
    site.jobs.finish(site.running_id, site.small)
    page.wait_for_selector("body[data-view=grid]")
    assert tile_order(page) == site.small["orders"]["max_activation"]


def test_the_main_page_links_a_finished_atlas_to_its_view(tab, site):
    page = tab.page
    tab.open()
    page.evaluate(f"location.hash = '#job={site.small_id}'")
    link = page.wait_for_selector("#result a.atlas-link")
    assert link.get_attribute("href") == f"/atlas/{site.small_id}"
    assert tab.wait_images_loaded('#result figure[data-artifact="sheet-feature-visualizations.png"] img') == 1
    assert not [u for u in tab.urls if UNIT_PICTURES in u]  # the units' pictures are the atlas view's
    tab.screenshot("atlas-main-page")
    link.click()
    page.wait_for_selector("body[data-view=grid]")
    assert path_of(page) == f"/atlas/{site.small_id}" and not page.is_visible("#key-dialog")
    page.go_back()
    page.wait_for_selector("#result a.atlas-link")


def test_a_unit_page_runs_deconvnet_and_activation_maximization_on_the_unit(tab, site):
    page = tab.page
    open_atlas(tab, f"/atlas/{site.small_id}/units/4", view="unit")
    deconvnet = page.locator('form[data-kind="deconvnet"]')
    deconvnet.locator('[name="top_k"]').fill("2")
    deconvnet.locator('[name="method"]').select_option("guided_backprop")
    deconvnet.locator('button[type="submit"]').click()
    deconvnet_id = deconvnet.locator("a.job-open").get_attribute("href", timeout=20_000).split("#job=")[1]
    maximization = page.locator('form[data-kind="activation_maximization"]')
    assert json.loads(maximization.locator('[name="extra"]').input_value()) == {"lr": 0.1}  # the atlas's own
    maximization.locator('[name="steps"]').fill("4")
    maximization.locator('button[type="submit"]').click()
    maximization_id = maximization.locator("a.job-open").get_attribute("href", timeout=20_000).split("#job=")[1]
    with site.stack.client() as client:
        jobs = {i: client.get(f"/v1/jobs/{i}").json() for i in (deconvnet_id, maximization_id)}
        for job_id in jobs:
            client.post(f"/v1/jobs/{job_id}/cancel")
    made = jobs[deconvnet_id]
    assert (made["kind"], made["model"]) == ("deconvnet", "shapes-cnn")
    assert {k: made["params"].get(k) for k in ("layer", "channels", "dataset", "top_k", "method")} == {
        "layer": "features.6", "channels": [4], "dataset": "shapes-val", "top_k": 2, "method": "guided_backprop"}  # fmt: skip
    made = jobs[maximization_id]
    assert made["kind"] == "activation_maximization"
    assert made["params"]["objective"]["type"] == "channel"
    assert made["params"]["objective"]["layer"] == "features.6" and made["params"]["objective"]["units"] == [4]
    assert (made["params"]["steps"], made["params"]["size"], made["params"]["lr"]) == (4, 32, 0.1)
    assert made["params"]["reference_dataset"] == "shapes-val"


def test_a_job_that_is_not_an_atlas_or_not_there_is_said_so(tab, site):
    page = tab.page
    open_atlas(tab, f"/atlas/{site.other_id}", view="error")
    assert "is a deconvnet job" in page.text_content("#atlas-problem")
    page.goto(f"{site.stack.base_url}/atlas/{'0' * 26}")
    page.wait_for_selector("body[data-view=error]")
    assert "404" in page.text_content("#atlas-problem")

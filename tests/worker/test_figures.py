"""Figures a person can read: the deconvnet channel choice, the labelled grids, the charts, and
that identical input gives identical PNG bytes (artifacts are compared by sha256 across retries)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from worker.core.attribution.charts import beeswarm_png, beeswarm_sample, importance_png, waterfall_png
from worker.core.deconvnet import channel_maxima, distinct_channels, strongest_channels
from worker.core.figures import image_grid_png
from worker.core.imaging import enlarge, prepare_images
from worker.kinds.activation_maximization.figures import grid_layout
from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn, shapes_val


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at + 4 : at + 8])
        at += 12 + length
    return chunks


# ----------------------------------------------------------------------------- channel choice


def literal_choice(values: np.ndarray, count: int, top_k: int) -> list[int]:
    """The rule written out with Python sets: strongest first, then least overlap with any one
    chosen channel, then least overlap in all, then the stronger; dead channels only to fill."""
    maxima = values.max(axis=0)
    order = sorted(range(values.shape[1]), key=lambda c: (-maxima[c], c))
    tops = {c: set(np.argsort(-values[:, c], kind="stable")[:top_k].tolist()) for c in order}
    live = [c for c in order if maxima[c] > 0]
    chosen: list[int] = []
    while live and len(chosen) < count:
        if not chosen:
            best = live[0]
        else:
            best = min(
                live,
                key=lambda c: (max(len(tops[c] & tops[s]) for s in chosen), sum(len(tops[c] & tops[s]) for s in chosen), order.index(c)),
            )  # fmt: skip
        chosen.append(best)
        live.remove(best)
    return chosen + [c for c in order if maxima[c] <= 0][: count - len(chosen)]


def test_distinct_channels_on_a_hand_computed_case():
    # 6 images, 5 channels. Top-2 images: c0 {0, 1} (strongest), c1 {0, 1}, c2 {0, 2}, c3 {4, 5}
    # (weakest of the live ones); c4 never activates.
    values = torch.tensor(
        [
            [9.0, 8.0, 5.0, 0.1, -1.0],
            [8.5, 7.0, 0.0, 0.0, -1.0],
            [0.0, 0.0, 4.0, 0.0, -1.0],
            [0.0, 0.0, 0.0, 0.0, -1.0],
            [0.0, 0.0, 0.0, 1.0, -1.0],
            [0.0, 0.0, 0.0, 0.9, -1.0],
        ]
    )
    choice = distinct_channels(values, 3, top_k=2)
    # c3 shares nothing with c0; then c2 shares one image (0) with c0, c1 shares two.
    assert choice.channels == [0, 3, 2] and choice.shared == [0, 0, 1] and choice.candidates == 4
    assert strongest_channels(values, 3) == [0, 1, 2]  # what the old default showed: c0 and c1 alike
    everything = distinct_channels(values, 5, top_k=2)
    assert everything.channels == [0, 3, 2, 1, 4]  # the dead channel only fills the count


@pytest.mark.parametrize("seed", range(6))
def test_distinct_channels_equals_the_literal_rule(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(30, 12)).astype(np.float32)
    values[rng.integers(0, 30, 5)] += 4.0  # loud images most channels share
    values[:, rng.integers(0, 12)] = -1.0  # one dead channel
    for count, top_k in ((4, 3), (8, 5), (12, 2)):
        assert distinct_channels(torch.from_numpy(values), count, top_k).channels == literal_choice(values, count, top_k)


def test_the_default_channels_of_shapes_cnn_features_11_show_different_images():
    """The issue's observation: the 4 strongest channels at features.11 have the same top 6
    images; the default choice's top images differ from row to row."""
    model = load_shapes_cnn()
    pictures, _ = shapes_val()
    batches = (prepare_images(pictures[s : s + 100], SHAPES_INPUT, "cpu") for s in range(0, len(pictures), 100))
    values, _ = channel_maxima(model, batches, "features.11")

    def top(c):
        return frozenset(values[:, c].topk(6).indices.tolist())

    assert len({top(c) for c in strongest_channels(values, 4)}) == 1
    chosen = distinct_channels(values, 4, top_k=6).channels
    assert all(len(top(a) & top(b)) <= 1 for i, a in enumerate(chosen) for b in chosen[i + 1 :])


# ----------------------------------------------------------------------------- grids and pixels


def test_enlarge_repeats_each_pixel_by_a_whole_factor():
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    big = enlarge(patch, 128)
    assert big.shape == (132, 110, 3)  # factor 11: the smallest making the longer side >= 128
    assert np.array_equal(big[::11, ::11], patch) and np.array_equal(big[10::11, 10::11], patch)
    assert enlarge(np.zeros((3, 200, 150)), 128).shape == (200, 150, 3)  # large enough already


def test_an_image_grid_is_byte_identical_when_drawn_twice_and_carries_no_software_or_date():
    rng = np.random.default_rng(1)
    rows = [[rng.random((3, 12, 12)) for _ in range(6)] for _ in range(3)]
    kwargs = dict(
        title="model · layer · method", notes=["a note long enough to wrap " * 8], row_labels=["ch 1\nmax 2.5"] * 3,
        column_labels=["#1", "#2", "#3"], captions=[["1.5\nimage.png"] * 3] * 3, group=2,
    )  # fmt: skip
    first, second = image_grid_png(rows, **kwargs), image_grid_png(rows, **kwargs)
    assert first == second
    chunks = png_chunks(first)
    assert b"tIME" not in chunks and b"tEXt" not in chunks and b"iTXt" not in chunks
    image = np.asarray(Image.open(io.BytesIO(first)).convert("RGB"))
    # 12 px cells enlarged 8x with nearest neighbour: one pasted cell is found as 8x8 blocks.
    cell = (np.clip(rows[0][0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    hits = np.argwhere((image[:-95, :-95] == cell[0, 0]).all(axis=2))
    assert any(np.array_equal(image[y : y + 96, x : x + 96], cell) for y, x in hits[:2000])


def test_charts_are_byte_identical_when_drawn_twice():
    names = ["price", "season", "region"]
    phi = np.random.default_rng(2).normal(size=(50, 3))
    colours = [np.linspace(0, 1, 50).tolist(), [i % 4 for i in range(50)], [i % 2 for i in range(50)]]
    kinds, categories = ["numeric", "categorical", "categorical"], [None, ["w", "sp", "su", "a"], ["n", "s"]]
    for draw in (
        lambda: importance_png(names, np.abs(phi).mean(0).tolist(), title="t", subtitle="a\nb"),
        lambda: waterfall_png(names, phi[0].tolist(), {"price": 1.5, "season": "w", "region": "n"}, output=1.0, baseline_output=0.5, title="w"),
        lambda: beeswarm_png(names, phi, colours, kinds, categories, title="b", total_rows=500, sample_note="seed 0"),
    ):  # fmt: skip
        first, second = draw(), draw()
        assert first == second and b"tEXt" not in png_chunks(first) and b"tIME" not in png_chunks(first)
        assert Image.open(io.BytesIO(first)).size[0] >= 600


def test_the_beeswarm_sample_is_bounded_seeded_and_sorted():
    assert beeswarm_sample(300, 0).tolist() == list(range(300))
    first, again, other = beeswarm_sample(3000, 0), beeswarm_sample(3000, 0), beeswarm_sample(3000, 1)
    assert len(first) == 400 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.all(np.diff(first) > 0) and first.max() < 3000


@pytest.mark.parametrize(
    "groups, rows",
    [
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),  # 10 units x 1: two even rows
        ([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], [list(range(6)), list(range(6, 12))]),  # 2 units of 3 per row
        ([0] * 10 + [1] * 10, [list(range(8)), [8, 9], list(range(10, 18)), [18, 19]]),  # a unit wider than a row
        ([0, 0], [[0, 1]]),
    ],
)
def test_actmax_grid_layout_puts_units_in_rows_and_wraps(groups, rows):
    assert grid_layout(groups) == rows


# ----------------------------------------------------------------------------- through HTTP


def _job(stack, client, kind: str, model: str, params: dict, timeout: float = 240) -> dict:
    created = client.post("/v1/jobs", json={"kind": kind, "model": model, "params": params})
    assert created.status_code == 202, created.text
    done = stack.wait_status(client, created.json()["id"], {"succeeded", "failed"}, timeout=timeout)
    assert done["status"] == "succeeded", done["error"]
    return done


def _artifact(client, job: dict, name: str) -> bytes:
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, (name, response.text)
    return response.content


def test_a_default_deconvnet_job_shows_distinct_channels_with_legible_projections_and_patches(stack):
    client = stack.client()
    job = _job(stack, client, "deconvnet", "shapes-cnn", {"layer": "features.11", "dataset": "shapes-val", "top_channels": 4, "top_k": 6})
    result = json.loads(_artifact(client, job, "result.json"))
    choice = result["channel_choice"]
    assert choice["rule"] == "distinct_top_images" and "overlap least" in choice["description"]
    assert list(choice["shared_top_images"]) == [str(c) for c in result["channels"]] and len(result["channels"]) == 4
    images = {c: {i["image_index"] for i in result["items"] if i["channel"] == c} for c in result["channels"]}
    assert len({frozenset(v) for v in images.values()}) == 4  # every row shows other images

    reconstructions = np.load(io.BytesIO(_artifact(client, job, "reconstructions.npy")))
    assert reconstructions.shape == (24, 3, 64, 64)  # the contract: raw, uncropped projections
    names = {a["name"] for a in job["result"]["artifacts"]}
    assert {f"projection-{i:03d}.png" for i in range(24)} | {f"patch-{i:03d}.png" for i in range(24)} <= names
    pictures, _ = shapes_val()
    for item in result["items"][:3]:
        y0, x0, y1, x1 = item["receptive_field"]
        projection = Image.open(io.BytesIO(_artifact(client, job, f"projection-{item['index']:03d}.png")))
        patch = np.asarray(Image.open(io.BytesIO(_artifact(client, job, f"patch-{item['index']:03d}.png"))))
        factor = -(-128 // max(y1 - y0, x1 - x0))
        assert projection.size == (patch.shape[1], patch.shape[0]) == ((x1 - x0) * factor, (y1 - y0) * factor)
        # the patch is the dataset image under the receptive field, pixel for pixel
        expected = pictures[item["image_index"]][y0:y1, x0:x1].astype(int)
        assert np.abs(patch[::factor, ::factor].astype(int) - expected).max() <= 1
    grid = Image.open(io.BytesIO(_artifact(client, job, "grid.png")))
    assert grid.size[0] >= 6 * 2 * 96 and grid.size[1] >= 4 * 96


def test_a_3000_row_attribution_draws_a_seeded_sample_and_says_so(stack):
    client = stack.client()
    params = {"dataset": "retail-sample", "method": "saliency", "seed": 3}
    job = _job(stack, client, "tabular_attribution", "retail-mlp", params)
    result = json.loads(_artifact(client, job, "result.json"))
    note = result["charts"]["summary.png"]
    assert (note["rows_shown"], note["rows"]) == (400, 3000) and "seed 3" in note["note"]
    assert len(result["rows"]) == 3000
    assert Image.open(io.BytesIO(_artifact(client, job, "summary.png"))).format == "PNG"

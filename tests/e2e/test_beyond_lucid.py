"""MACO, feature accentuation and the trust panel through HTTP: a real API, worker and Redis.

Independent expectations: two MACO images of different seeds have different pixels but the
same Fourier magnitude (only the phase is optimized); an accentuation whose objective weight is
0 returns its seed; the seed's own activation is computed here with the model itself; the
spectrum cached for a dataset goes with the dataset."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch

from tests.conftest import started_stack
from tests.e2e.dataset_files import png_of, shapes_pictures, zip_of
from tests.e2e.test_jobs_api import assert_problem
from worker.core.actmax.param import COLOR_CORRELATION_NORMALIZED
from worker.core.imaging import prepare_images
from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn

pytestmark = pytest.mark.slow

KIND = "activation_maximization"
OBJECTIVE = {"type": "channel", "layer": "features.11", "units": [3, 52]}


@pytest.fixture(scope="module")
def lucid_stack(redis_url, tmp_path_factory):
    with started_stack(redis_url, tmp_path_factory) as stack:
        yield stack


def run(stack, params: dict, timeout: float = 240) -> dict:
    client = stack.client()
    created = client.post("/v1/jobs", json={"kind": KIND, "model": "shapes-cnn", "params": params})
    assert created.status_code == 202, created.text
    return stack.wait_status(client, created.json()["id"], {"succeeded", "failed"}, timeout=timeout)


def artifact(stack, job: dict, name: str) -> bytes:
    response = stack.client().get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, (name, response.text)
    return response.content


def linear_magnitude(images: np.ndarray) -> np.ndarray:
    """|rfft2| of the images' linear version (the inverse of the sigmoid, then of the colour mixing)."""
    rgb = torch.from_numpy(images).double().clamp(1e-6, 1 - 1e-6)
    inverse = torch.linalg.inv(COLOR_CORRELATION_NORMALIZED.double())
    linear = torch.einsum("nchw,dc->ndhw", torch.logit(rgb), inverse)
    return torch.fft.rfft2(linear - linear.mean((2, 3), keepdim=True), norm="ortho").abs().numpy()


def test_maco_keeps_the_datasets_magnitude_and_only_moves_the_phase(lucid_stack):
    params = {"objective": OBJECTIVE, "parameterization": "maco", "spectrum_dataset": "shapes-val", "steps": 12, "size": 64}
    first, second = run(lucid_stack, {**params, "seed": 1}), run(lucid_stack, {**params, "seed": 2})
    assert first["status"] == second["status"] == "succeeded", (first["error"], second["error"])
    a = np.load(io.BytesIO(artifact(lucid_stack, first, "images.npy")))
    b = np.load(io.BytesIO(artifact(lucid_stack, second, "images.npy")))
    assert np.abs(a - b).mean() > 0.05  # different phases: different pictures
    # ... with one magnitude (up to the 8-bit-free float images' sigmoid clamp at the extremes)
    ma, mb = linear_magnitude(a), linear_magnitude(b)
    assert np.abs(ma - mb).max() / ma.max() < 1e-3
    alpha = np.load(io.BytesIO(artifact(lucid_stack, first, "alpha.npy")))
    assert alpha.shape == (2, 64, 64) and alpha.min() >= 0 and np.isclose(alpha.reshape(2, -1).max(1), 1).all()
    result = json.loads(artifact(lucid_stack, first, "result.json"))
    assert result["maco"]["spectrum"] == "shapes-val"
    assert {"image-000-alpha.png", "image-001-alpha.png"} <= {x["name"] for x in first["result"]["artifacts"]}
    spectra = lucid_stack.redis.hvals(f"{lucid_stack.namespace}:spectra:alice")
    assert len(spectra) == 1  # computed by the first job, read by the second
    assert json.loads(spectra[0])["built_by"] == first["id"]


def test_an_accentuation_with_no_objective_returns_its_seed(lucid_stack):
    seed = {"dataset": "shapes-val", "index": 7}
    job = run(lucid_stack, {"objective": OBJECTIVE, "init": seed, "accentuation": {"objective_weight": 0}, "steps": 10, "size": 64})
    assert job["status"] == "succeeded", job["error"]
    images = np.load(io.BytesIO(artifact(lucid_stack, job, "images.npy")))
    picture = shapes_pictures(8)[0][7].astype(np.float32).transpose(2, 0, 1) / 255
    for image in images:  # the seed, less the 2-px checkerboard the fft basis leaves out
        assert np.abs(image - picture).mean() < 0.03
    assert np.abs(images[0] - images[1]).max() == 0
    result = json.loads(artifact(lucid_stack, job, "result.json"))
    assert result["accentuation"]["seed"] == {"dataset": "shapes-val", "image": result["accentuation"]["seed"]["image"], "index": 7}
    assert result["accentuation"]["distance"] == [0.0, 0.0]


def test_an_accentuation_raises_the_unit_from_its_seed_and_shows_the_change(lucid_stack):
    picture = shapes_pictures(3)[0][2]
    inline = base64.b64encode(png_of(picture)).decode()
    job = run(lucid_stack, {"objective": OBJECTIVE, "init": {"data": inline}, "steps": 24, "size": 64, "reference_dataset": "shapes-val"})
    assert job["status"] == "succeeded", job["error"]
    names = {x["name"] for x in job["result"]["artifacts"]}
    assert {"seed.png", "accentuation.png", "difference-000.png", "difference-001.png"} <= names
    result = json.loads(artifact(lucid_stack, job, "result.json"))
    accentuation = result["accentuation"]
    model = load_shapes_cnn().eval()
    with torch.no_grad():
        seed_act = model.features[:12](prepare_images([picture], SHAPES_INPUT, "cpu"))[0]
    expected = [float(seed_act[3].mean()), float(seed_act[52].mean())]
    assert np.allclose(accentuation["seed_activation"], expected, rtol=0.05, atol=0.05)  # the seed as rendered
    assert accentuation["weight_automatic"] and all(w > 0 for w in accentuation["weight"])
    for image, before in zip(result["images"], accentuation["seed_activation"]):
        assert image["activation"] > before
    trust = result["trust"]
    assert trust["path_similarity"]["computed"] and set(trust["checks"]) >= {"ratio_to_dataset_max", "path_similarity"}
    assert all(isinstance(image["path_similarity"], float) for image in result["images"])
    for unit in trust["path_similarity"]["units"]:  # the default 8, read from the layer's activation index
        assert unit["exemplars"] == 8 and len(set(unit["exemplar_images"])) == 8


def test_the_trust_panel_says_why_path_similarity_is_missing(lucid_stack):
    job = run(lucid_stack, {"objective": OBJECTIVE, "steps": 4, "size": 32})
    assert job["status"] == "succeeded", job["error"]
    result = json.loads(artifact(lucid_stack, job, "result.json"))
    assert result["trust"]["path_similarity"] == {
        "computed": False,
        "reason": "needs reference_dataset (its images are the exemplars and the baseline)",
    }
    assert [image["path_similarity"] for image in result["images"]] == [None, None]


def test_bad_seeds_and_maco_options_are_refused(lucid_stack):
    client = lucid_stack.client()

    def submit(**params):
        return client.post("/v1/jobs", json={"kind": KIND, "model": "shapes-cnn", "params": {"objective": OBJECTIVE, **params}})

    lonely = assert_problem(submit(accentuation={"weight": 1}), 422)
    assert "give `init` too" in lonely["detail"]
    layer = assert_problem(submit(init={"dataset": "shapes-val", "index": 0}, accentuation={"layer": "features.99"}), 422)
    assert layer["errors"][0]["loc"] == ["body", "params", "accentuation", "layer"]
    both = assert_problem(submit(init={"dataset": "shapes-val", "index": 0, "image": "x.png"}), 422)
    assert "exactly one of `image`" in both["detail"]
    missing = assert_problem(submit(init={"dataset": "no-such-set", "index": 0}), 422)
    assert "no-such-set" in missing["detail"]
    blur = assert_problem(submit(parameterization="maco", regularizers={"blur_every": 4}), 422)
    assert "blur_every" in blur["detail"] and "maco keeps fixed" in blur["detail"]
    spectrum = assert_problem(submit(spectrum_dataset="shapes-val"), 422)
    assert "maco only" in spectrum["detail"]
    # Known only when the dataset is read: the job fails naming the image and the dataset.
    job = run(lucid_stack, {"objective": OBJECTIVE, "init": {"dataset": "shapes-val", "image": "nope.png"}, "steps": 2})
    assert job["status"] == "failed" and "nope.png" in job["error"]["detail"] and "shapes-val" in job["error"]["detail"]


def test_a_datasets_spectrum_goes_with_the_dataset(lucid_stack):
    client = lucid_stack.client()
    pictures = shapes_pictures(12)[0]
    upload = client.post(
        "/v1/datasets",
        files={"file": ("few.zip", zip_of({f"p{i:02d}.png": png_of(p) for i, p in enumerate(pictures)}))},
        data={"name": "few-for-maco"},
    )
    assert upload.status_code == 201, upload.text
    job = run(lucid_stack, {"objective": OBJECTIVE, "parameterization": "maco", "spectrum_dataset": "few-for-maco", "steps": 2, "size": 32})
    assert job["status"] == "succeeded", job["error"]
    key = f"{lucid_stack.namespace}:spectra:alice"
    records = [json.loads(v) for v in lucid_stack.redis.hvals(key) if json.loads(v)["dataset"] == "few-for-maco"]
    assert len(records) == 1 and records[0]["images"] == 12
    assert client.delete("/v1/datasets/few-for-maco").status_code == 204
    assert not [v for v in lucid_stack.redis.hvals(key) if json.loads(v)["dataset"] == "few-for-maco"]
    assert lucid_stack.redis.zscore(f"{lucid_stack.namespace}:blob-leases", records[0]["prefix"]) == 0


def test_the_randomization_check_recomputes_the_projections_with_random_weights(lucid_stack):
    client = lucid_stack.client()
    pictures = shapes_pictures(6)[0]
    inline = [base64.b64encode(png_of(p)).decode() for p in pictures]
    body = {"kind": "deconvnet", "model": "shapes-cnn",
            "params": {"layer": "features.10", "images": inline, "channels": [3, 52], "top_k": 2, "method": "saliency"}}  # fmt: skip
    plain = client.post("/v1/jobs", json=body)
    checked = client.post("/v1/jobs", json={**body, "params": {**body["params"], "randomization_check": True}})
    assert plain.status_code == checked.status_code == 202, (plain.text, checked.text)
    plain = lucid_stack.wait_status(client, plain.json()["id"], {"succeeded", "failed"}, timeout=240)
    checked = lucid_stack.wait_status(client, checked.json()["id"], {"succeeded", "failed"}, timeout=240)
    assert plain["status"] == checked["status"] == "succeeded", (plain["error"], checked["error"])
    off = json.loads(artifact(lucid_stack, plain, "result.json"))["trust"]["randomization_check"]
    assert off["computed"] is False and "randomization_check: true" in off["reason"]
    panel = json.loads(artifact(lucid_stack, checked, "result.json"))["trust"]["randomization_check"]
    assert panel["computed"] and panel["method"] == "saliency" and "features.0" in panel["randomized_modules"]
    assert isinstance(panel["flagged"], bool) and len(panel["maps"]) == 4
    real = np.load(io.BytesIO(artifact(lucid_stack, checked, "reconstructions.npy")))
    randomized = np.load(io.BytesIO(artifact(lucid_stack, checked, "randomized_reconstructions.npy")))
    assert real.shape == randomized.shape and not np.allclose(real, randomized)
    same = np.load(io.BytesIO(artifact(lucid_stack, plain, "reconstructions.npy")))
    assert np.array_equal(real, same)  # the check leaves the job's own projections alone

"""MACO's magnitude from a dataset: the average Fourier magnitude of its images at the rendering
size (worker/core/actmax/maco.py `dataset_spectrum`), computed by the first job that needs it
and kept in the blob store for the next ones (service/spectra.py: one record per dataset
content, size and colour basis, deleted with the dataset).

The average of a dataset's magnitude spectra settles within a few hundred images, so at most
MAX_SPECTRUM_IMAGES of them, evenly spaced over the dataset, are read: a million-image dataset
costs the same as a thousand-image one.
"""

from __future__ import annotations

import io
import secrets
import time

import numpy as np
import torch

from service.indexes import dataset_identity
from service.spectra import SPECTRUM_FILE, SpectrumCatalog, spectrum_id
from worker.context import JobContext
from worker.core.actmax.maco import dataset_spectrum

MAX_SPECTRUM_IMAGES = 1000
WRITE_GRACE_SECONDS = 600


def cached_spectrum(ctx: JobContext, dataset_id: str, size: int, *, decorrelate: bool = True) -> torch.Tensor:
    """[3, size, size // 2 + 1]: the dataset's spectrum, read if a job computed it already."""
    catalog = SpectrumCatalog(ctx.runs.redis, ctx.runs.keys)
    _, dataset_record = ctx.datasets.catalog.find(ctx.tenant, dataset_id)
    key = spectrum_id(dataset_identity(dataset_record), size, decorrelate)
    record = catalog.get(ctx.tenant, key)
    if record is not None:
        return torch.from_numpy(np.load(io.BytesIO(ctx.files.store.get_bytes(record["file"]))))
    started = time.perf_counter()
    images = ctx.datasets.images(ctx.tenant, dataset_id)
    picks = np.unique(np.linspace(0, len(images) - 1, min(len(images), MAX_SPECTRUM_IMAGES)).round().astype(int))

    def pictures():
        for start in range(0, len(picks), 64):
            ctx.check()
            ctx.progress(0.01, f"the Fourier spectrum of {dataset_id}: {start} of {len(picks)} images")
            for picture in images.read(picks[start : start + 64].tolist()):
                yield torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)

    spectrum = dataset_spectrum(pictures(), size, decorrelate=decorrelate)
    buffer = io.BytesIO()
    np.save(buffer, spectrum.numpy())
    prefix = f"spectra/{ctx.tenant}/{key}/{secrets.token_hex(6)}"
    catalog.leases.hold(prefix, WRITE_GRACE_SECONDS)
    info = ctx.files.store.put_bytes(f"{prefix}/{SPECTRUM_FILE}", buffer.getvalue())
    catalog.publish(ctx.tenant, {
        "id": key, "dataset": dataset_id, "size": size, "decorrelate": decorrelate,
        "images": len(picks), "prefix": prefix, "file": f"{prefix}/{SPECTRUM_FILE}", "bytes": info.size,
        "built_by": ctx.job_id, "built_at": time.time(), "build_seconds": round(time.perf_counter() - started, 3),
    })  # fmt: skip
    return spectrum

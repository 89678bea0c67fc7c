"""MACO's dataset spectra: the average Fourier magnitude of a dataset's images at one size,
computed once (worker/kinds/activation_maximization/spectrum.py) and kept in the blob store.

A spectrum is a derived record of its dataset (derived_records.py: the blob prefix is held
while written, kept once published, released when the dataset is deleted), under its own Redis
hash `ns:spectra:{tenant}`.
"""

from __future__ import annotations

import hashlib
import json

from service.derived_records import DerivedRecords

SPECTRUM_FILE = "spectrum.npy"


def spectrum_id(dataset_identity: str, size: int, decorrelate: bool) -> str:
    text = json.dumps(["maco-spectrum", dataset_identity, size, decorrelate])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class SpectrumCatalog(DerivedRecords):
    collection = "spectra"

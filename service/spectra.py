"""MACO's dataset spectra: the average Fourier magnitude of a dataset's images at one size,
computed once (worker/kinds/activation_maximization/spectrum.py) and kept in the blob store.

A spectrum is a derived record of its dataset, kept like an activation index (same lifecycle:
the blob prefix is held while written, kept once published, released when the dataset is
deleted), so it is stored by the index catalog's code under its own Redis hash
`ns:spectra:{tenant}`; it does not depend on a model, and it is not listed as an index.
"""

from __future__ import annotations

import hashlib
import json

from service.indexes import IndexCatalog

SPECTRUM_FILE = "spectrum.npy"


def spectrum_id(dataset_identity: str, size: int, decorrelate: bool) -> str:
    text = json.dumps(["maco-spectrum", dataset_identity, size, decorrelate])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class SpectrumCatalog(IndexCatalog):
    def _key(self, tenant: str) -> str:
        return f"{self.keys.ns}:spectra:{tenant}"

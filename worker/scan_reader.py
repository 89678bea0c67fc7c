"""Images read, decoded and prepared ahead of the forward pass, in a fixed order.

A scan alternates two stages: reading and decoding images (I/O, zlib/JPEG, resizing) and the
model's forward pass. Threads do the first for the next batches while the model does the second
(Pillow and torch release the GIL in their inner loops), so the slower stage sets the pace.
A torch DataLoader with worker processes would do the same, but needs its dataset pickled into
(or forked with) the worker processes, and the blob store's S3 client does not survive a fork;
threads share the worker's one client. Memory is bounded by `depth` batches in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from worker.core.imaging import prepare_images
from worker.datasets import ImageSet


def prepared_batches(
    images: ImageSet, start: int, stop: int, batch_size: int, contract: dict[str, Any], *, threads: int = 2, depth: int = 3
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(images prepared by the model's input contract on the CPU, their global indices, their
    labels or None) for images start..stop in order, `batch_size` at a time."""
    spans = [(first, min(first + batch_size, stop)) for first in range(start, stop, batch_size)]

    def load(span: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        indices = list(range(*span))
        pictures = images.read(indices)
        labels = torch.tensor([images.labels[i] for i in indices]) if images.labels is not None else None
        return prepare_images(pictures, contract, "cpu"), torch.tensor(indices), labels

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="glassbox-read") as pool:
        pending: deque[Future] = deque()
        upcoming = iter(spans)
        for span in upcoming:
            pending.append(pool.submit(load, span))
            if len(pending) >= depth:
                break
        while pending:
            batch = pending.popleft().result()
            span = next(upcoming, None)
            if span is not None:
                pending.append(pool.submit(load, span))
            yield batch

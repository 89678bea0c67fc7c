"""A job's artifacts as files in the blob store: written by the worker before it finishes the
job, under a prefix of their own per try, held by a lease until the finish publishes them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from service.blob_leases import BlobLeases
from service.jobspec import ArtifactRef
from service.storage import BlobStore

ARTIFACT_URL = "/v1/jobs/{job_id}/artifacts/{name}"
# How long the blobs of a try stay if its worker dies before finishing the job.
UNPUBLISHED_GRACE_SECONDS = 3600


def artifact_url(job_id: str, name: str) -> str:
    return ARTIFACT_URL.format(job_id=job_id, name=name)


@dataclass(frozen=True)
class ArtifactBlob:
    name: str
    content_type: str
    data: bytes


class ArtifactFiles:
    def __init__(self, store: BlobStore, leases: BlobLeases):
        self.store = store
        self.leases = leases

    def write(self, job_id: str, blobs: Sequence[ArtifactBlob]) -> tuple[str, list[ArtifactRef]]:
        """Put every artifact under a new prefix of this try; returns the prefix and the
        references (size and sha256 measured as the bytes went in). The file store fsyncs them
        in the background, within GLASSBOX_ARTIFACT_FLUSH_SECONDS (storage/deferred_flush.py)."""
        prefix = f"artifacts/{job_id}/{secrets.token_hex(6)}"
        self.leases.hold(prefix, UNPUBLISHED_GRACE_SECONDS)
        refs = []
        for blob in blobs:
            info = self.store.put_bytes(f"{prefix}/{blob.name}", blob.data, sync=False)
            refs.append(
                ArtifactRef(
                    name=blob.name, content_type=blob.content_type, bytes=info.size, sha256=info.sha256,
                    url=artifact_url(job_id, blob.name),
                )  # fmt: skip
            )
        return prefix, refs

    def discard(self, prefix: str) -> None:
        """The try was not published (the job was taken from this worker): delete at once."""
        self.store.delete_prefix(prefix)
        self.leases.release(prefix)

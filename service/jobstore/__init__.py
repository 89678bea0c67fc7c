"""Job records in Redis and their lifecycle over RQ (torch-free, HTTP-free: the API and the
workers both use it). Read in this order:

- ../keys.py   every Redis key name, and the layout (shared with catalogs and webhooks)
- record.py    the typed job record and its codec
- scripts.py   the Lua transitions (lua.py: how they are called by name)
- store.py     reads and client transitions (create, cancel, delete), admission onto RQ
- creates.py   the API's create on the asyncio client (one round trip, no thread)
- artifacts.py a job's artifacts as blob-store files (written before the finish publishes them)
- runs.py      worker transitions (start, progress, finish, requeue) and liveness
- reaper.py    settling jobs of dead workers, one elected reaper per interval
- reader.py    the API's cached async reads
- stats.py     counts and durations for /metrics
"""

from service.jobstore.artifacts import ArtifactBlob, ArtifactFiles, artifact_url
from service.jobstore.creates import AsyncJobCreates
from service.jobstore.ids import decode_page_token, encode_page_token, new_job_id, request_fingerprint
from service.jobstore.reader import AsyncJobReader
from service.jobstore.reaper import Reaper
from service.jobstore.record import JobRecord
from service.jobstore.runs import JobRuns, OwnershipLost, RequeueOutcome
from service.jobstore.stats import JOB_DURATION_BUCKETS, job_stats
from service.jobstore.store import CancelOutcome, CreateOutcome, JobStore
from service.keys import Keys

__all__ = [
    "JOB_DURATION_BUCKETS",
    "ArtifactBlob",
    "ArtifactFiles",
    "AsyncJobCreates",
    "AsyncJobReader",
    "CancelOutcome",
    "CreateOutcome",
    "JobRecord",
    "JobRuns",
    "JobStore",
    "Keys",
    "OwnershipLost",
    "Reaper",
    "RequeueOutcome",
    "artifact_url",
    "decode_page_token",
    "encode_page_token",
    "job_stats",
    "new_job_id",
    "request_fingerprint",
]

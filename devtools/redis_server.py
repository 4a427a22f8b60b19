"""Real redis-server processes for tests and benchmarks.

`existing_or_new()` answers with REDIS_URL when a server answers there, else
starts a private ``redis-server --port <free> --save '' --appendonly no`` and
stops it afterwards. `RedisServer` can be stopped and started again on the same
port, for outage tests; given `make_certs`' files it serves TLS only (`rediss://`);
`extra` passes more redis-server arguments (``["--maxmemory", "8mb"]``,
``["--rename-command", "CONFIG", ""]``).
`RedisClusterNodes` starts a Redis Cluster of three primaries on this machine
(`redis+cluster://`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000, as Redis Cluster uses) is a port and free too."""
    for _ in range(100):
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at `url`."""
    if not url:
        return False
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


@dataclass(frozen=True)
class Certs:
    """A test certificate authority and a server certificate it signed for localhost and 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_certs(folder: Path) -> Certs:
    """Generate a CA and a server certificate signed by it, valid for a day, with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not on PATH: install it (apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=frugal-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1",
         "-extfile", ext],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([openssl, *map(str, step)], check=True, capture_output=True)
    return Certs(ca=ca, cert=cert, key=key)


class RedisServer:
    """A private redis-server on 127.0.0.1 with no persistence (TLS only, given `certs`)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: str | None = None,
        password: str = "",
        certs: Certs | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH: install it (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        self.certs = certs
        auth = f":{password}@" if password else ""
        if certs is None:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        else:  # the client checks the server's certificate against the test CA, and its name
            self.url = f"rediss://{auth}localhost:{self.port}/0?ssl_ca_certs={certs.ca}"
        self.data_dir = data_dir  # set: `stop(save=True)` keeps the data for the next start
        self.extra: list[str] = list(extra)  # more redis-server arguments
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.certs is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.certs.cert),
                     "--tls-key-file", str(self.certs.key), "--tls-ca-cert-file", str(self.certs.ca),
                     "--tls-auth-clients", "no"]  # fmt: skip
        if self.data_dir:
            args += ["--dir", self.data_dir, "--dbfilename", "test.rdb"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.url, timeout=0.2):
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        return self

    def stop(self, *, save: bool = False) -> None:
        if self._proc is None:
            return
        if save:
            if not self.data_dir:
                raise ValueError("stop(save=True) needs a RedisServer made with data_dir")
            client = redis.Redis.from_url(self.url)
            with contextlib.suppress(redis.ConnectionError):
                client.shutdown(save=True)  # the server exits while answering
            client.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: only what the server had written (its append-only file) survives."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


class RedisClusterNodes:
    """A Redis Cluster of `size` primaries (no replicas) on 127.0.0.1, made with `redis-cli --cluster create`."""

    def __init__(self, size: int = 3) -> None:
        self.cli = shutil.which("redis-cli")
        if self.cli is None or shutil.which("redis-server") is None:
            raise RuntimeError(
                "redis-server and redis-cli are not on PATH: install them (apt-get install redis-server)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="redis-cluster-")
        self.nodes = [RedisServer(free_cluster_port()) for _ in range(size)]
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisClusterNodes:
        for node in self.nodes:
            folder = Path(self._dir.name) / str(node.port)
            folder.mkdir()
            node.data_dir = str(folder)
            node.extra += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        assert self.cli is not None
        subprocess.run([self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(self._state_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Redis Cluster on {', '.join(addresses)} did not reach cluster_state:ok")
            time.sleep(0.1)
        return self

    @staticmethod
    def _state_ok(node: RedisServer) -> bool:
        client = redis.Redis.from_url(node.url)
        try:
            return b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self._dir.cleanup()


@contextlib.contextmanager
def existing_or_new() -> Iterator[tuple[str, bool]]:
    """(url, owned): REDIS_URL when it answers (owned False), else a private server (owned True)."""
    url = os.environ.get("REDIS_URL", "")
    if answers(url):
        yield url, False
        return
    server = RedisServer().start()
    try:
        yield server.url, True
    finally:
        server.stop()


def delete_namespace(url: str, namespace: str) -> int:
    """Delete the keys a test made under its own namespace (safe on a shared server)."""
    client = redis.Redis.from_url(url)
    try:
        found = list(client.scan_iter(match=f"*{namespace}*"))
        return int(client.delete(*found)) if found else 0
    finally:
        client.close()

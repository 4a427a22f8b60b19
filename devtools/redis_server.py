"""Real redis-server processes for tests and benchmarks.

`existing_or_new()` answers with REDIS_URL when a server answers there, else
starts a private ``redis-server --port <free> --save '' --appendonly no`` and
stops it afterwards. `RedisServer` can be stopped and started again on the same
port, for outage tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import redis

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class RedisServer:
    """A private redis-server on 127.0.0.1 with no persistence."""

    def __init__(self, port: int | None = None, *, data_dir: str | None = None, password: str = "") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH: install it (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.data_dir = data_dir  # set: `stop(save=True)` keeps the data for the next start
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.data_dir:
            args += ["--dir", self.data_dir, "--dbfilename", "test.rdb"]
        if self.password:
            args += ["--requirepass", self.password]
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

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


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

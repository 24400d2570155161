"""A real `issuer serve` process on loopback: for tests, benchmarks and the soak run.

Development tooling, like the fake Clerk: it starts the console script of the
current environment with the given variables and waits for ``/healthz``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from issuer_dev.localdb import free_port


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextmanager
def issuer_serve(
    env: dict[str, str],
    log_dir: Path,
    *,
    workers: int = 1,
    timeout: float = 60,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[Served]:
    """Start `issuer serve` with ``env`` on ``port`` (default: a free one) of ``host``; stop it
    afterwards (always). Pass ``port`` when ``env`` must name the URL (``ISSUER_URL``)."""
    port = port or free_port()
    log_path = log_dir / f"issuer-serve-{port}.log"
    exe = Path(sys.executable).parent / "issuer"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://{host}:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"issuer serve exited early:\n{served.log()}")
            try:
                # 5 s per probe: a loaded machine can take longer than 1 s to answer.
                if httpx.get(served.url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"issuer serve did not become healthy:\n{served.log()}")
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

"""A real model server process (`airflow-mlops serve`) on loopback, for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

TOKEN = "s3cret-admin-token"


class Server:
    def __init__(
        self, state_dir: Path, tracking: str, token: str | None = TOKEN, args: tuple[str, ...] = ()
    ) -> None:
        self.state_dir, self.tracking, self.token, self.args = state_dir, tracking, token, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        env = {**os.environ, "MLOPS_SERVER_TOKEN": self.token or ""}
        log = (self.state_dir.parent / f"server-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("airflow-mlops")),
                "serve",
                "--port",
                str(self.port),
                "--state-dir",
                str(self.state_dir),
                "--tracking-uri",
                self.tracking,
                *self.args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"server exited: {(self.state_dir.parent / f'server-{self.port}.log').read_text()}"
            )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not become ready in 90 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)

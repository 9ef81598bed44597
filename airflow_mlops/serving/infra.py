"""Infra validation: a model version proven servable before it takes traffic (no Airflow import).

TFX's InfraValidator blesses a model only after loading it in a real server and sending it
requests; :func:`validate` does that with our own server. It starts ``airflow-mlops serve`` as a
sandbox (its own process, a loopback port, its own state folder and admin token, no request log),
deploys the candidate there exactly as production would (downloaded from the registry, its
digest checked, its modules vetted), replays requests and checks:

==========  =====================================================================================
``loads``   the deployment succeeds
``answers`` the candidate answers its own input example, and no request gets a server error (5xx)
``inputs``  every request the champion answers, the candidate answers too: the champion's input
            example and the sample of logged requests the operator passes (the rows the
            endpoint's callers send today). A field the candidate requires and the champion did
            not is named. Without a champion, every logged request must be answered.
``latency`` the candidate's p99 over the replay is at most ``max_p99_ms``
``memory``  the sandbox's peak resident memory with the candidate loaded and replayed is at most
            ``max_rss_mb`` (before the champion is loaded beside it, for the comparison)
==========  =====================================================================================

The report says which passed, with the figures; ``blessed`` is all of them.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError, ModelServerError

Rows = list[dict[str, Any]]
#: The checks a blessing needs, all passed.
CHECKS = ("loads", "answers", "inputs", "latency", "memory")


@dataclass(frozen=True)
class InfraLimits:
    """What a servable model must stay within (see the module docstring)."""

    max_p99_ms: float = 1000.0
    max_rss_mb: float = 4096.0
    startup_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("max_p99_ms", "max_rss_mb", "startup_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise MLOpsConfigError(f"infra limits: {name} must be a positive number, got {value!r}")

    @classmethod
    def from_dict(cls, limits: Mapping[str, Any] | None) -> InfraLimits:
        unknown = sorted(set(limits or {}) - set(cls.__dataclass_fields__))
        if unknown:
            raise MLOpsConfigError(
                f"infra limits: unknown fields {unknown} (fields: {sorted(cls.__dataclass_fields__)})"
            )
        return cls(**(limits or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sandbox:
    """``airflow-mlops serve`` on a free loopback port with its own state folder and token."""

    def __init__(self, work: Path, tracking_uri: str, env: Mapping[str, str], trusted_modules: Sequence[str]):
        self.token = secrets.token_urlsafe(24)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "server.log"
        command = [
            sys.executable,
            "-m",
            "airflow_mlops.cli",
            "serve",
            "--port",
            str(self.port),
            "--state-dir",
            str(work / "state"),
            "--tracking-uri",
            tracking_uri,
            "--no-request-log",
            *(["--trusted-model-modules", ",".join(trusted_modules)] if trusted_modules else []),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env={**os.environ, **env, "MLOPS_SERVER_TOKEN": self.token},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ModelServerError(
                    f"infra validation: the sandbox server exited with {self.process.returncode}: {self.tail()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise ModelServerError(
            f"infra validation: the sandbox server was not ready in {timeout:.0f} s: {self.tail()}"
        )

    def tail(self, characters: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-characters:]

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory (Linux's VmHWM; the current one elsewhere)."""
        import psutil

        status = Path(f"/proc/{self.process.pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sandbox(
    tracking_uri: str, env: Mapping[str, str], trusted_modules: Sequence[str], limits: InfraLimits
) -> Iterator[Sandbox]:
    with tempfile.TemporaryDirectory(prefix="mlops-infra-") as work:
        server = Sandbox(Path(work), tracking_uri, env, trusted_modules)
        try:
            server.wait_ready(limits.startup_timeout_s)
            yield server
        finally:
            server.stop()


def validate(
    candidate: Mapping[str, str],
    champion: Mapping[str, str] | None,
    tracking_uri: str,
    logged: Sequence[Rows] = (),
    limits: InfraLimits | None = None,
    env: Mapping[str, str] | None = None,
    trusted_modules: Sequence[str] = (),
) -> dict[str, Any]:
    """Validate ``candidate`` (``{"name", "version"}``) against ``champion`` (or None) in a sandbox;
    ``logged``: requests (each a list of rows) the endpoint's callers sent. Returns the report
    (``blessed``, ``checks`` with each one's ``passed`` and ``detail``, the figures)."""
    import httpx

    limits = limits or InfraLimits()
    checks: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(passed), "detail": detail})

    with sandbox(tracking_uri, env or {}, trusted_modules, limits) as server:
        admin = {"Authorization": f"Bearer {server.token}"}
        client = httpx.Client(base_url=server.url, timeout=120)

        def deploy(endpoint: str, model: Mapping[str, str]) -> httpx.Response:
            body = {
                "variants": {"main": dict(model)},
                "policy": {"kind": "single"},
                "who": "infra validation",
            }
            return client.put(f"/v1/admin/deployments/{endpoint}", json=body, headers=admin)

        def replay(endpoint: str, requests: Sequence[Rows]) -> list[tuple[int, Any, float]]:
            answers = []
            for rows in requests:
                started = time.perf_counter()
                response = client.post(f"/v1/models/{endpoint}/predict", json={"rows": rows})
                seconds = time.perf_counter() - started
                body = (
                    response.json()
                    if response.headers.get("content-type", "").startswith("application/json")
                    else response.text
                )
                answers.append((response.status_code, body, seconds))
            return answers

        with client:
            loaded = deploy("candidate", candidate)
            if loaded.status_code != 200:
                check("loads", False, f"the server could not deploy it: {_detail(loaded)}")
                return _report(candidate, champion, limits, checks, figures)
            check("loads", True, "deployed in the sandbox")
            described = client.get("/v1/admin/deployments/candidate/signatures", headers=admin).json()["main"]
            own = [[row] for row in described["input_example"]]
            answered = replay("candidate", [*own, *logged])
            own_answers, logged_answers = answered[: len(own)], answered[len(own) :]
            failing = [(i, a) for i, a in enumerate(own_answers) if a[0] != 200]
            server_errors = [a for a in answered if a[0] >= 500]
            check(
                "answers",
                not failing and not server_errors and bool(answered),
                (
                    f"its input example: {len(own) - len(failing)} of {len(own)} rows answered"
                    + (f" (first refusal: {_body_detail(failing[0][1][1])})" if failing else "")
                    + (" (the package keeps no input example)" if not own else "")
                    + f"; {len(server_errors)} server errors over {len(answered)} requests"
                    + ("; nothing to replay: no input example and no logged requests" if not answered else "")
                ),
            )
            latencies = sorted(a[2] * 1000 for a in answered)
            if latencies:
                figures["p50_ms"] = round(_percentile(latencies, 50), 2)
                figures["p99_ms"] = round(_percentile(latencies, 99), 2)
                check(
                    "latency",
                    figures["p99_ms"] <= limits.max_p99_ms,
                    f"p99 {figures['p99_ms']:.1f} ms over {len(latencies)} requests (at most {limits.max_p99_ms:g} ms)",
                )
            figures["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
            check(
                "memory",
                figures["peak_rss_mb"] <= limits.max_rss_mb,
                f"peak resident memory {figures['peak_rss_mb']:.0f} MB (at most {limits.max_rss_mb:g} MB)",
            )
            figures["requests"] = len(answered)
            if champion is None:
                refused = [(rows, a) for rows, a in zip(logged, logged_answers, strict=True) if a[0] != 200]
                check(
                    "inputs",
                    not refused,
                    f"no champion to compare with; {len(logged) - len(refused)} of {len(logged)} logged requests answered"
                    + (f" (first refusal: {_body_detail(refused[0][1][1])})" if refused else ""),
                )
                return _report(candidate, champion, limits, checks, figures)
            if deploy("champion", champion).status_code != 200:
                check(
                    "inputs", True, f"the champion {_name(champion)} could not be loaded here: not compared"
                )
                return _report(candidate, champion, limits, checks, figures)
            theirs = client.get("/v1/admin/deployments/champion/signatures", headers=admin).json()["main"]
            requests = [*[[row] for row in theirs["input_example"]], *logged]
            by_champion = replay("champion", requests)
            by_candidate = replay("candidate", requests)
            accepted = [i for i, a in enumerate(by_champion) if a[0] == 200]
            missed = [i for i in accepted if by_candidate[i][0] != 200]
            new_fields = sorted(
                {c["name"] for c in described["inputs"]} - {c["name"] for c in theirs["inputs"]}
            )
            check(
                "inputs",
                not missed,
                f"{len(accepted) - len(missed)} of the {len(accepted)} requests the champion {_name(champion)} "
                "answers, the candidate answers"
                + (f" (first refusal: {_body_detail(by_candidate[missed[0]][1])})" if missed else "")
                + (f"; fields the champion does not take: {new_fields}" if new_fields else ""),
            )
    return _report(candidate, champion, limits, checks, figures)


def _report(
    candidate: Mapping[str, str],
    champion: Mapping[str, str] | None,
    limits: InfraLimits,
    checks: list[dict[str, Any]],
    figures: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model": candidate["name"],
        "version": str(candidate["version"]),
        "champion": str(champion["version"]) if champion else None,
        "blessed": {c["check"] for c in checks} == set(CHECKS) and all(c["passed"] for c in checks),
        "checks": checks,
        "limits": limits.to_dict(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **figures,
    }


def failed_reasons(report: Mapping[str, Any]) -> str:
    """The failed checks of a report, as one line."""
    return "; ".join(f"{c['check']}: {c['detail']}" for c in report["checks"] if not c["passed"])


def _name(model: Mapping[str, str]) -> str:
    return f"{model['name']} v{model['version']}"


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def _detail(response: Any) -> str:
    try:
        return _body_detail(response.json())
    except ValueError:
        return f"HTTP {response.status_code} {response.text[:300]}"


def _body_detail(body: Any) -> str:
    """A 4xx/5xx body's ``detail`` in a line: FastAPI's list of errors names the field and the rule."""
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
        first = detail[0]
        return f"{'.'.join(str(p) for p in first.get('loc', []))}: {first.get('msg', '')}"
    return str(detail)[:300]

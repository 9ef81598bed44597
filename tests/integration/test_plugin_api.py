"""The plugin's MLOps API inside a real `airflow api-server`: Airflow's authentication (simple auth
manager, JWT), the registry's governance actions recorded with the signed-in user, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration
MODEL = "flight_delay"


@pytest.fixture(scope="module")
def api(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """An API server on loopback with one user (admin) and a registry holding two candidate versions."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("plugin-api")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking, registry_uri=tracking)
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, str(root / "model"), tags={"state": "candidate"})
    passwords = root / "passwords.json"
    port = free_port()
    env = {**os.environ, "AIRFLOW__API__PORT": str(port), "AIRFLOW__MLOPS__MLFLOW_TRACKING_URI": tracking,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)}
    log = root / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200 and passwords.exists():
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the API server did not start: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        password = json.loads(passwords.read_text())["admin"]
        token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
        yield {"url": url, "headers": {"Authorization": f"Bearer {token}"}, "client": client, "log": log}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_actions_and_reads_are_refused_without_authentication(api: dict) -> None:
    for method, path, body in (("GET", "/mlops/api/models", None), ("GET", f"/mlops/api/models/{MODEL}", None),
                               ("POST", f"/mlops/api/models/{MODEL}/versions/1/approve", {"why": "looks good"}),
                               ("POST", f"/mlops/api/models/{MODEL}/rollback", {"why": "bad model"})):
        answer = httpx.request(method, f"{api['url']}{path}", json=body)
        assert answer.status_code == 401, (path, answer.text)
        forged = httpx.request(method, f"{api['url']}{path}", json=body, headers={"Authorization": "Bearer forged"})
        assert forged.status_code in (401, 403), (path, forged.text)
    assert api["client"].get_model_version(MODEL, "1").tags["state"] == "candidate"


def test_approve_then_promote_records_the_signed_in_user_in_the_registry(api: dict) -> None:
    url, headers = api["url"], api["headers"]
    listed = httpx.get(f"{url}/mlops/api/models", headers=headers).json()
    assert [m["name"] for m in listed] == [MODEL] and [v["state"] for v in listed[0]["versions"]] == ["candidate"] * 2

    approved = httpx.post(f"{url}/mlops/api/models/{MODEL}/versions/1/approve", headers=headers,
                          json={"why": "reviewed the model card"})
    assert approved.status_code == 200, approved.text
    tags = api["client"].get_model_version(MODEL, "1").tags
    assert tags["state"] == "approved" and tags["state_by"] == "admin (Airflow UI)"
    assert tags["state_reason"] == "reviewed the model card"

    promoted = httpx.post(f"{url}/mlops/api/models/{MODEL}/versions/1/promote", headers=headers,
                          json={"why": "better than nothing"})
    assert promoted.status_code == 200, promoted.text
    detail = httpx.get(f"{url}/mlops/api/models/{MODEL}", headers=headers).json()
    assert detail["versions"][0]["aliases"] == ["champion"] and detail["versions"][0]["state"] == "champion"


def test_bad_requests_get_clear_errors(api: dict) -> None:
    url, headers = api["url"], api["headers"]
    unknown = httpx.get(f"{url}/mlops/api/models/no_such_model", headers=headers)
    assert unknown.status_code == 404 and "no registered model 'no_such_model'" in unknown.json()["detail"]
    no_version = httpx.post(f"{url}/mlops/api/models/{MODEL}/versions/9/approve", headers=headers, json={"why": "ok!"})
    assert no_version.status_code == 404 and "has no version '9'" in no_version.json()["detail"]
    verb = httpx.post(f"{url}/mlops/api/models/{MODEL}/versions/2/bless", headers=headers, json={"why": "ok!"})
    assert verb.status_code == 404 and "unknown action 'bless'" in verb.json()["detail"]
    no_reason = httpx.post(f"{url}/mlops/api/models/{MODEL}/versions/2/reject", headers=headers, json={"why": ""})
    assert no_reason.status_code == 422
    not_approved = httpx.post(f"{url}/mlops/api/models/{MODEL}/versions/2/promote", headers=headers,
                              json={"why": "skip the review"})
    assert not_approved.status_code == 409 and "only an approved version can be promoted" in not_approved.json()["detail"]
    assert api["client"].get_model_version(MODEL, "2").tags["state"] == "candidate"

"""The plugin's MLOps API inside a real `airflow api-server`: Airflow's authentication (simple auth
manager, JWT), the registry's governance actions recorded with the signed-in user, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.processes import stop_group
from tests.conftest import free_port
from tests.connections import mlflow_conn

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
ROLLOUT_OF_2 = [
    {
        "step": 1,
        "weight": 0.05,
        "healthy": True,
        "reasons": ["pass error rate 0.0000 vs primary 0.0000 (at most +0.02)"],
        "candidate_requests": 40,
        "replicas": 1,
    },
    {
        "step": 2,
        "weight": 0.25,
        "healthy": False,
        "reasons": [
            "FAIL error rate 0.1200 vs primary 0.0000 (at most +0.02); the candidate refused 12 requests (422)"
        ],
        "candidate_requests": 100,
        "replicas": 1,
    },
]
# The first page of a fresh API server imports MLflow and matplotlib: allow for a slow machine.
http = httpx.Client(timeout=60)


@pytest.fixture(scope="module")
def api(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """An API server on loopback with one user (admin) and a registry holding two candidate versions."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("plugin-api")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking, registry_uri=tracking)
    client.create_registered_model(MODEL)
    lake = root / "lake"
    for version, auc in ((1, 0.7052), (2, 0.7141)):
        report = lake / "evaluations" / MODEL / f"run{version}" / "evaluation.json"
        report.parent.mkdir(parents=True)
        slices = {"carrier": {"UA": {"rows": 420, "auc": auc}, "B6": {"rows": 380, "auc": auc - 0.02}}}
        report.write_text(
            json.dumps(
                {
                    "overall": {"auc": auc, "calibration_error": 0.014},
                    "slices": slices,
                    "champion": {"overall": {"auc": 0.7052}, "slices": slices} if version == 2 else None,
                }
            )
        )
        report.with_suffix(".html").write_text(f"<html><body>evaluation of version {version}</body></html>")
        client.create_model_version(
            MODEL, str(root / "model"), tags={"state": "candidate", "evaluation_report": report.as_uri()}
        )
    # Version 2's stepwise rollout, as StepwiseRolloutOperator keeps it: healthy at 5 %, rolled back at 25 %.
    client.set_model_version_tag(MODEL, "2", "rollout", json.dumps(ROLLOUT_OF_2))
    monitoring = lake / "monitoring" / MODEL / "manual__1"
    monitoring.mkdir(parents=True)
    (monitoring / "drift.json").write_text(
        json.dumps(
            {"score": 1.989, "drifted": ["temp", "dewp"], "window": {"start": "2013-03-01T00:00:00+00:00"}}
        )
    )
    (monitoring / "drift.html").write_text("<html><body>drift report</body></html>")
    passwords = root / "passwords.json"
    port = free_port()
    mlflow_conn_id = mlflow_conn(tracking)  # in os.environ before it is copied
    env = {
        **os.environ,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__MLOPS__MLFLOW_CONN_ID": mlflow_conn_id,
        "AIRFLOW__MLOPS__LAKE_URI": lake.as_uri(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,operator:op",
        "AIRFLOW__MLOPS__APPROVER_MUST_DIFFER": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    log = root / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if (
                    httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200
                    and passwords.exists()
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the API server did not start: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        passwords_of = json.loads(passwords.read_text())

        def token_of(user: str) -> str:
            answer = httpx.post(f"{url}/auth/token", json={"username": user, "password": passwords_of[user]})
            return str(answer.json()["access_token"])

        token = token_of("admin")
        yield {
            "password": passwords_of["admin"],
            "as": {user: {"Authorization": f"Bearer {token_of(user)}"} for user in ("viewer", "operator")},
            "url": url,
            "headers": {"Authorization": f"Bearer {token}"},
            "client": client,
            "log": log,
            "lake": lake,
            "token": token,
        }
    finally:
        stop_group(process)


def test_actions_and_reads_are_refused_without_authentication(api: dict) -> None:
    for method, path, body in (
        ("GET", "/mlops/api/models", None),
        ("GET", f"/mlops/api/models/{MODEL}", None),
        ("GET", "/mlops/models", None),
        ("GET", "/mlops/data", None),
        ("GET", "/mlops/deployments", None),
        ("GET", "/mlops/files?uri=/etc/hostname", None),
        ("POST", f"/mlops/api/models/{MODEL}/versions/1/approve", {"why": "looks good"}),
        ("POST", f"/mlops/api/models/{MODEL}/rollback", {"why": "bad model"}),
    ):
        answer = http.request(method, f"{api['url']}{path}", json=body)
        assert answer.status_code == 401, (path, answer.text)
        forged = http.request(
            method, f"{api['url']}{path}", json=body, headers={"Authorization": "Bearer forged"}
        )
        assert forged.status_code in (401, 403), (path, forged.text)
    assert api["client"].get_model_version(MODEL, "1").tags["state"] == "candidate"
    # A browser that is not signed in is sent to Airflow's login page, which brings it back.
    page = http.get(f"{api['url']}/mlops/data?x=1", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 303 and page.headers["location"] == "/auth/login?next=%2Fmlops%2Fdata%3Fx%3D1"
    posted = http.post(
        f"{api['url']}/mlops/api/models/{MODEL}/rollback",
        json={"why": "bad model"},
        headers={"Accept": "text/html"},
    )
    assert posted.status_code == 401  # only page views are redirected


def test_approve_then_promote_records_the_signed_in_user_in_the_registry(api: dict) -> None:
    url, headers = api["url"], api["headers"]
    api["client"].create_registered_model("no_versions_yet")
    listed = {m["name"]: m for m in http.get(f"{url}/mlops/api/models", headers=headers).json()}
    assert listed["no_versions_yet"]["versions"] == []
    assert [v["state"] for v in listed[MODEL]["versions"]] == ["candidate"] * 2

    approved = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/1/approve",
        headers=headers,
        json={"why": "reviewed the model card"},
    )
    assert approved.status_code == 200, approved.text
    tags = api["client"].get_model_version(MODEL, "1").tags
    assert tags["state"] == "approved" and tags["state_by"] == "admin (admin, Airflow UI)"
    assert tags["state_reason"] == "reviewed the model card"

    promoted = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/1/promote",
        headers=headers,
        json={"why": "better than nothing"},
    )
    assert promoted.status_code == 200, promoted.text
    detail = http.get(f"{url}/mlops/api/models/{MODEL}", headers=headers).json()
    assert detail["versions"][0]["aliases"] == ["champion"] and detail["versions"][0]["state"] == "champion"


def test_bad_requests_get_clear_errors(api: dict) -> None:
    url, headers = api["url"], api["headers"]
    unknown = http.get(f"{url}/mlops/api/models/no_such_model", headers=headers)
    assert unknown.status_code == 404 and "no registered model 'no_such_model'" in unknown.json()["detail"]
    no_version = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/9/approve", headers=headers, json={"why": "ok!"}
    )
    assert no_version.status_code == 404 and "has no version '9'" in no_version.json()["detail"]
    verb = http.post(f"{url}/mlops/api/models/{MODEL}/versions/2/bless", headers=headers, json={"why": "ok!"})
    assert verb.status_code == 404 and "unknown action 'bless'" in verb.json()["detail"]
    no_reason = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/2/reject", headers=headers, json={"why": ""}
    )
    assert no_reason.status_code == 422
    not_approved = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/2/promote", headers=headers, json={"why": "skip the review"}
    )
    assert (
        not_approved.status_code == 409
        and "only an approved version can be promoted" in not_approved.json()["detail"]
    )
    assert api["client"].get_model_version(MODEL, "2").tags["state"] == "candidate"


def test_the_pages_show_versions_charts_reports_and_act_through_the_session_cookie(api: dict) -> None:
    cookies = {"_token": api["token"]}  # what the Airflow UI's login leaves in the browser
    models = http.get(f"{api['url']}/mlops/models", cookies=cookies)
    assert models.status_code == 200, models.text
    page = models.text
    assert f"<img alt='{MODEL} metrics per version' src='data:image/png;base64," in page  # the chart
    assert "0.7141" in page and "AUC (champion)" in page
    assert f"/mlops/api/models/{MODEL}/versions/2/reject" in page and "evaluation</a>" in page
    (link,) = [part.split("'")[0] for part in page.split("href='")[1:] if "run2/evaluation.html" in part]
    report = http.get(f"{api['url']}{link.replace('&amp;', '&')}", cookies=cookies)
    assert report.status_code == 200 and "evaluation of version 2" in report.text
    # The button's call: the same JSON API, authenticated by the cookie alone.
    rejected = http.post(
        f"{api['url']}/mlops/api/models/{MODEL}/versions/2/reject",
        cookies=cookies,
        json={"why": "worse on B6"},
    )
    assert (
        rejected.status_code == 200
        and api["client"].get_model_version(MODEL, "2").tags["state"] == "rejected"
    )
    data = http.get(f"{api['url']}/mlops/data", cookies=cookies)
    assert data.status_code == 200 and "1.9890" in data.text and "temp, dewp" in data.text
    deployments = http.get(f"{api['url']}/mlops/deployments", cookies=cookies)
    assert deployments.status_code == 200 and "The model server did not answer" in deployments.text
    serving = http.get(f"{api['url']}/mlops/api/deployments", cookies=cookies).json()
    assert serving["deployments"] == {} and serving["error"]  # the pages' source says the same


def test_only_reports_inside_the_lake_are_served(api: dict) -> None:
    url, headers = api["url"], api["headers"]
    outside = http.get(f"{url}/mlops/files", params={"uri": "/etc/hostname"}, headers=headers)
    assert outside.status_code == 403 and "inside the lake" in outside.json()["detail"]
    escape = http.get(f"{url}/mlops/files", params={"uri": f"{api['lake']}/../mlflow.db"}, headers=headers)
    assert escape.status_code == 403
    missing = http.get(f"{url}/mlops/files", params={"uri": f"{api['lake']}/nothing.html"}, headers=headers)
    assert missing.status_code == 404 and "no report at" in missing.json()["detail"]


def test_a_viewer_reads_but_cannot_decide_and_the_trainer_cannot_approve_its_own_version(api: dict) -> None:
    url, viewer, operator = api["url"], api["as"]["viewer"], api["as"]["operator"]
    version = (
        api["client"]
        .create_model_version(
            MODEL,
            "/nonexistent/model",
            tags={"state": "candidate", "dag_id": "train_delay", "triggered_by_user": "operator"},
        )
        .version
    )
    assert http.get(f"{url}/mlops/api/models/{MODEL}", headers=viewer).status_code == 200
    assert http.get(f"{url}/mlops/models", headers=viewer).status_code == 200
    for path, action in (
        (f"/mlops/api/models/{MODEL}/versions/{version}/approve", f"approve {MODEL} v{version}"),
        (f"/mlops/api/models/{MODEL}/versions/{version}/reject", f"reject {MODEL} v{version}"),
        (f"/mlops/api/models/{MODEL}/versions/{version}/promote", f"promote {MODEL} v{version}"),
        (f"/mlops/api/models/{MODEL}/rollback", f"roll back {MODEL}"),
    ):
        refused = http.post(f"{url}{path}", headers=viewer, json={"why": "I can see it"})
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["detail"].startswith(
            f"viewer (viewer) may not {action}: it needs edit access to"
        )
    assert api["client"].get_model_version(MODEL, version).tags["state"] == "candidate"

    # [mlops] approver_must_differ: the user who triggered the training run may not approve it ...
    own = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/{version}/approve",
        headers=operator,
        json={"why": "mine is good"},
    )
    assert own.status_code == 403 and "operator triggered the run that trained" in own.json()["detail"]
    assert api["client"].get_model_version(MODEL, version).tags["state"] == "candidate"
    # ... but may reject it, and another editor may approve it; both are recorded with the role.
    approved = http.post(
        f"{url}/mlops/api/models/{MODEL}/versions/{version}/approve",
        headers=api["headers"],
        json={"why": "second pair of eyes"},
    )
    assert approved.status_code == 200, approved.text
    assert api["client"].get_model_version(MODEL, version).tags["state_by"] == "admin (admin, Airflow UI)"


def test_a_crafted_model_name_renders_as_text_and_tags_cannot_read_outside_the_lake(
    api: dict, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, sign_in

    crafted = "x',window.pwned=1,'<b>bold"
    outside = tmp_path / "evaluation.json"  # a report outside the lake that a tag points to
    outside.write_text(json.dumps({"overall": {"auc": 0.4242}, "slices": {}}))
    api["client"].create_registered_model(crafted)
    api["client"].create_model_version(
        crafted, "/nonexistent/model", tags={"state": "candidate", "evaluation_report": outside.as_uri()}
    )
    page = http.get(f"{api['url']}/mlops/models", headers=api["headers"]).text
    assert "onclick" not in page and "<b>bold" not in page and "0.4242" not in page
    with chromium() as driver:
        sign_in(driver, api["url"], "/mlops/models", "admin", api["password"])
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert crafted in headings  # the name as text, tags and all
        section = driver.find_element(By.XPATH, f"//h2[text()={json.dumps(crafted)}]")
        rollback = section.find_element(By.XPATH, "following::button[@data-verb='roll back'][1]")
        assert (
            rollback.get_attribute("data-path")
            == "/mlops/api/models/x%27%2Cwindow.pwned%3D1%2C%27%3Cb%3Ebold/rollback"
        )
        for button in [rollback, *driver.find_elements(By.CSS_SELECTOR, "button[data-action=approve]")]:
            button.click()
            driver.switch_to.alert.dismiss()  # the reason prompt: the click reached act() with the path
        assert driver.execute_script("return window.pwned === undefined")


def test_the_models_of_a_run_and_the_openapi_schema_of_the_views_api(api: dict) -> None:
    """``/api/runs/{dag}/{run}/models`` answers the versions that DAG run registered (their tags)
    with their evaluation; another run's, none; without a token, 401. Every route the views read
    is in the app's OpenAPI schema."""
    url, headers, client = api["url"], api["headers"], api["client"]
    report = api["lake"] / "evaluations" / MODEL / "run1" / "evaluation.json"
    version = client.create_model_version(
        MODEL,
        "/nonexistent/model",
        tags={
            "state": "candidate",
            "dag_id": "train_delay",
            "dag_run_id": "manual__2013-03-01",
            "evaluation_report": report.as_uri(),
        },
    ).version
    found = http.get(f"{url}/mlops/api/runs/train_delay/manual__2013-03-01/models", headers=headers)
    assert found.status_code == 200, found.text
    (only,) = found.json()
    assert (only["name"], only["version"], only["state"]) == (MODEL, str(version), "candidate")
    assert only["evaluation"]["overall"]["auc"] == 0.7052
    other = http.get(f"{url}/mlops/api/runs/train_delay/manual__2013-04-01/models", headers=headers)
    assert other.status_code == 200 and other.json() == []
    assert http.get(f"{url}/mlops/api/runs/train_delay/manual__2013-03-01/models").status_code == 401
    no_report = http.get(
        f"{url}/mlops/api/task-instances/train_delay/manual__2013-03-01/train/validation", headers=headers
    )
    assert no_report.status_code == 404
    assert (
        "task 'train' of train_delay run 'manual__2013-03-01' (map index -1) recorded no validation report"
        in (no_report.json()["detail"])
    )
    me = http.get(f"{url}/mlops/api/me", headers=api["as"]["viewer"]).json()
    assert me == {"name": "viewer", "role": "viewer", "may_decide": False}
    assert http.get(f"{url}/mlops/api/me", headers=headers).json()["may_decide"] is True
    schema = http.get(f"{url}/mlops/openapi.json").json()
    assert {
        "/api/me",
        "/api/models",
        "/api/models/{name}/evaluations",
        "/api/runs/{dag_id}/{run_id}/models",
        "/api/deployments",
        "/api/experiments",
        "/api/data",
        "/api/task-instances/{dag_id}/{run_id}/{task_id}/validation",
    } <= set(schema["paths"])
    # ... and in Airflow's own API docs: the root schema (what /docs shows) lists them under /mlops.
    root = http.get(f"{url}/openapi.json")
    assert root.status_code == 200, root.text[:500]
    assert {"/api/v2/dags", "/mlops/api/models/{name}", "/mlops/api/deployments"} <= set(root.json()["paths"])
    assert root.json()["paths"]["/mlops/api/me"]["get"]["tags"] == ["MLOps"]
    assert http.get(f"{url}/docs").status_code == 200
    client.delete_model_version(MODEL, str(version))  # the views' test counts the versions
    assert http.get(f"{url}/mlops/static/mlops.js").status_code == 200


def test_the_react_views_inside_airflows_ui_show_the_apis_values_and_decide_as_the_user(api: dict) -> None:
    """The "MLOps" entry of Airflow's own navigation (the plugin's React app, in Airflow's React tree
    and theme): the versions table, the chart's points and hover values equal to what the JSON API
    answers, the Data tab's drift chart, light and dark theme; approving from the view records the
    signed-in user and the reason; a Viewer sees the pages without any action button."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import background_luminance, chromium, full_page_screenshot, set_theme, sign_in

    url, client = api["url"], api["client"]
    version = client.create_model_version(MODEL, "/nonexistent/model", tags={"state": "candidate"}).version
    evaluations = http.get(f"{url}/mlops/api/models/{MODEL}/evaluations", headers=api["headers"]).json()
    assert (
        evaluations["1"]["overall"]["auc"] == 0.7052
        and evaluations["2"]["champion"]["overall"]["auc"] == 0.7052
    )
    data = http.get(f"{url}/mlops/api/data", headers=api["headers"]).json()
    assert [(w["endpoint"], w["drift_score"], w["drifted"]) for w in data["monitoring"]] == [
        (MODEL, 1.989, ["temp", "dewp"])
    ]

    def section(driver: Any) -> Any:
        return driver.find_element(By.CSS_SELECTOR, f"section[data-model='{MODEL}']")

    with chromium() as driver:
        wait = WebDriverWait(driver, 60)
        sign_in(driver, url, "/plugin/mlops", "admin", api["password"], ready="[data-view=mlops]")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"section[data-model='{MODEL}'] table"))
        assert driver.find_elements(By.CSS_SELECTOR, "nav a[href$='plugin/mlops'], a[href$='plugin/mlops']")
        points = wait.until(
            lambda d: section(d).find_elements(By.CSS_SELECTOR, "circle[data-series=auc]") or None
        )
        charted = {p.get_attribute("data-x"): float(p.get_attribute("data-y")) for p in points}
        assert charted == {v: e["overall"]["auc"] for v, e in evaluations.items()}
        ActionChains(driver).move_to_element(points[-1]).perform()
        tooltip = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=chart-tooltip]"))
        assert f"auc: {evaluations['2']['overall']['auc']:.4f}" in tooltip.text
        # A row per version, newest first, each with the state and the reason the API answers (the
        # module's other tests add versions and decide on them; this one reads whatever they left).
        answered = http.get(f"{url}/mlops/api/models/{MODEL}", headers=api["headers"]).json()
        rows = section(driver).find_elements(By.CSS_SELECTOR, "table[data-table$=versions] tbody tr")
        listed = [v for v in reversed(answered["versions"])]
        assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [v["version"] for v in listed]
        assert listed[0]["version"] == str(version) and {"1", "2"} <= {v["version"] for v in listed}
        for row, v in zip(rows, listed, strict=True):
            assert v["state"] in row.text and (v.get("why") or "") in row.text, (v, row.text)
        # Version 2's rollout: a row per step, its share, decision and reasons, as the API answers.
        (two,) = [v for v in answered["versions"] if v["version"] == "2"]
        assert two["rollout"] == ROLLOUT_OF_2
        steps = section(driver).find_elements(
            By.CSS_SELECTOR, f"table[data-table='{MODEL} v2 rollout'] tbody tr"
        )
        assert [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in steps] == [
            ["1", "5 %", "healthy: next step", "40", ROLLOUT_OF_2[0]["reasons"][0]],
            ["2", "25 %", "rolled back", "100", ROLLOUT_OF_2[1]["reasons"][0]],
        ]
        full_page_screenshot(driver, "api-models")

        # Approve the new version from the view: the API records who and why.
        rows[0].find_element(By.CSS_SELECTOR, "button[data-action=approve]").click()
        form = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=decision-form]"))
        form.find_element(By.TAG_NAME, "textarea").send_keys("better on every slice")
        form.find_element(By.CSS_SELECTOR, "button[data-action=confirm]").click()
        outcome = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=outcome]"))
        wait.until(lambda d: "done by" in outcome.text)
        tags = client.get_model_version(MODEL, str(version)).tags
        assert (tags["state"], tags["state_by"], tags["state_reason"]) == (
            "approved",
            "admin (admin, Airflow UI)",
            "better on every slice",
        )
        assert "approve done by admin (admin, Airflow UI)" in outcome.text

        # An older monitoring window: "all" charts both, "30 d" (before the newest) only the newest.
        older = api["lake"] / "monitoring" / MODEL / "manual__0"
        older.mkdir()
        (older / "drift.json").write_text(
            json.dumps({"score": 0.25, "drifted": [], "window": {"start": "2013-01-01T00:00:00+00:00"}})
        )
        driver.find_element(By.XPATH, "//button[normalize-space()='Data']").click()

        def drift_points(d: Any) -> list[tuple[str, float]]:
            found = d.find_elements(By.CSS_SELECTOR, "circle[data-series='drift score']")
            return [(p.get_attribute("data-x"), float(p.get_attribute("data-y"))) for p in found]

        wait.until(lambda d: len(drift_points(d)) == 2)
        assert drift_points(driver) == [("2013-01-01", 0.25), ("2013-03-01", 1.989)]
        driver.find_element(By.CSS_SELECTOR, "button[data-range='30 d']").click()
        wait.until(lambda d: drift_points(d) == [("2013-03-01", 1.989)])
        assert (
            "temp, dewp"
            in driver.find_element(By.CSS_SELECTOR, "table[data-table='monitoring windows']").text
        )
        full_page_screenshot(driver, "api-data")

        # Dark theme: Airflow's own switch (next-themes, localStorage "theme"); the views follow it.
        assert background_luminance(driver, "[data-view=mlops]") > 0.7
        set_theme(driver, "dark")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"section[data-model='{MODEL}'] table"))
        assert background_luminance(driver, "[data-view=mlops]") < 0.3
        full_page_screenshot(driver, "api-models-dark")
        for tab, ready in (
            ("Deployments", "[data-testid=problem]"),  # no model server here: the view says so
            ("Data", "circle[data-series='drift score']"),
        ):
            driver.find_element(By.XPATH, f"//button[normalize-space()='{tab}']").click()
            wait.until(lambda d, ready=ready: d.find_elements(By.CSS_SELECTOR, ready))
            full_page_screenshot(driver, f"api-{tab.lower()}-dark")

    with chromium() as driver:  # a Viewer: the same pages, no action buttons
        passwords = json.loads((Path(api["log"]).parent / "passwords.json").read_text())
        sign_in(driver, url, "/plugin/mlops", "viewer", passwords["viewer"], ready="[data-view=mlops]")
        WebDriverWait(driver, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f"section[data-model='{MODEL}'] table")
        )
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "circle[data-series=auc]"))
        assert driver.find_elements(By.CSS_SELECTOR, "button[data-action]") == []

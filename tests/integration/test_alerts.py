"""Alerts through Airflow's notifiers, configured by ``[mlops]`` options and connections: mail that
arrives at a local SMTP server (aiosmtpd on loopback, the ``inbox`` fixture), a Slack webhook post
to a local HTTP server; a pending approval (once), a notifier that cannot send never
failing the task it reports on. A drift breach in a real DAG run mails its report's link in
tests/integration/test_monitoring.py; a failed gate in test_evaluation.py; a rolled-back rollout
in test_serving.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.alerts import Alert, configured_notifiers, send
from airflow_mlops.exceptions import MLOpsConfigError
from tests.conftest import free_port
from tests.smtp import Inbox

pytestmark = pytest.mark.integration


def test_an_alert_mail_arrives_with_its_reasons_and_absolute_report_links(inbox: Inbox) -> None:
    sent = send(
        Alert(
            "drift",
            "flight_delay: model drift",
            ["2 feature(s) drifted: temp psi=1.2 > 0.2"],
            {"report": "/mlops/files?uri=file%3A%2F%2F%2Flake%2Fdrift.html"},
        ),
        {},
    )
    assert sent == 1
    (mail,) = inbox.wait(1)
    assert mail["Subject"] == "[airflow-mlops] flight_delay: model drift"
    assert mail["To"] == "oncall@example.com, ml-team@example.com"
    assert mail["From"] == "airflow-mlops@localhost"
    body = Inbox.body(mail)
    assert "temp psi=1.2 &gt; 0.2" in body
    assert "href='http://airflow.example.com:8080/mlops/files?uri=file%3A%2F%2F%2Flake%2Fdrift.html'" in body


def test_a_pending_approval_is_announced_once_per_version(inbox: Inbox, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout
    from mlflow import MlflowClient

    from airflow_mlops.sensors.approval import ModelApprovalSensor
    from tests.connections import mlflow_conn

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking, registry_uri=tracking)
    client.create_registered_model("alerted")
    client.create_model_version("alerted", str(tmp_path / "model"), tags={"gate": "passed"})
    sensor = ModelApprovalSensor(
        task_id="approve",
        name="alerted",
        version="1",
        mlflow_conn_id=mlflow_conn(tracking),
        deferrable=False,
        poke_interval=0.2,
        timeout=0.5,
    )
    for _ in range(2):  # a retry, or a sensor rescheduled: the reviewers are told once
        with pytest.raises(AirflowSensorTimeout):
            sensor.execute({"ti": None})  # type: ignore[arg-type]
    (mail,) = inbox.wait(1)
    assert mail["Subject"] == "[airflow-mlops] alerted v1 waits for approval"
    assert "gate: passed" in Inbox.body(mail) and "/mlops/models#alerted-v1" in Inbox.body(mail)
    assert client.get_model_version("alerted", "1").tags["approval_requested"]
    assert len(inbox.messages) == 1


def test_a_notifier_that_cannot_send_is_logged_and_the_others_still_send(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    closed = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": free_port(),
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_CLOSED", json.dumps(closed))

    def mail_to(to: str, conn_id: str) -> SmtpNotifier:
        return SmtpNotifier(
            to=to,
            from_email="a@example.com",
            smtp_conn_id=conn_id,
            subject="{{ mlops_alert.subject }}",
            html_content="{{ mlops_alert.text }}",
        )

    broken, working = mail_to("x@example.com", "smtp_closed"), mail_to("y@example.com", "smtp_alerts")
    alert = Alert("rolled_back", "canary on delay rolled back", ["error rate 0.4 vs 0.0"])
    with caplog.at_level("ERROR", logger="airflow_mlops.alerts"):
        assert send(alert, {}, [broken, working]) == 1
    assert "alert not sent by SmtpNotifier" in caplog.text and "canary on delay rolled back" in caplog.text
    (mail,) = inbox.wait(1)
    assert mail["To"] == "y@example.com" and "error rate 0.4 vs 0.0" in Inbox.body(mail)
    # The same notifier again: its templates were rendered on a copy, so they render afresh.
    assert send(Alert("drift", "second"), {}, [working]) == 1
    assert inbox.wait(2)[1]["Subject"] == "[airflow-mlops] second"


class _Hook(BaseHTTPRequestHandler):
    posts: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.posts.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def test_slack_alerts_post_to_the_webhook_the_connection_names(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/services/T0/B0/secret"
        monkeypatch.setenv(
            "AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "slackwebhook", "password": url})
        )
        monkeypatch.setenv("AIRFLOW__MLOPS__ALERT_SLACK_CONN_ID", "slack_alerts")
        monkeypatch.setenv("AIRFLOW__MLOPS__ALERTS_BASE_URL", "http://airflow.example.com")
        assert (
            send(Alert("approval_pending", "m v2 waits for approval", [], {"m v2": "/mlops/models#m-v2"}), {})
            == 1
        )
    finally:
        server.shutdown()
    (post,) = _Hook.posts
    assert post["path"] == "/services/T0/B0/secret"
    assert (
        post["body"]["text"] == "m v2 waits for approval\nm v2: http://airflow.example.com/mlops/models#m-v2"
    )


def test_slack_without_its_provider_is_named_and_the_alert_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import builtins

    real_import = builtins.__import__

    def without_slack(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("airflow.providers.slack"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_slack)
    monkeypatch.setenv("AIRFLOW__MLOPS__ALERT_SLACK_CONN_ID", "slack_alerts")
    with pytest.raises(
        MLOpsConfigError,
        match=r"alert_slack_conn_id is 'slack_alerts' but the Slack provider is not installed",
    ):
        configured_notifiers()
    with caplog.at_level("ERROR", logger="airflow_mlops.alerts"):
        assert send(Alert("drift", "m: model drift", ["psi 0.9"]), {}) == 0
    assert "alert not sent" in caplog.text and "m: model drift" in caplog.text and "psi 0.9" in caplog.text


def test_bad_alert_configuration_is_refused_by_name() -> None:
    with pytest.raises(
        MLOpsConfigError,
        match=r"alert kind must be one of \['drift', 'gate_failed', 'rolled_back', 'approval_pending'\], got 'oops'",
    ):
        Alert("oops", "t")

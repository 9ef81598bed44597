"""A local SMTP server for alert tests: mail received on loopback, parsed (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from tests.conftest import free_port


class Inbox:
    """Mail received by the local SMTP server, as parsed messages."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.arrived:
            self.messages.append(message)  # type: ignore[arg-type]
            self.arrived.notify_all()
        return "250 OK"

    def wait(self, count: int, timeout: float = 20) -> list[EmailMessage]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} mails arrived in {timeout} s"
        return self.messages

    @staticmethod
    def body(message: EmailMessage) -> str:
        part = message.get_body(("html", "plain"))
        assert part is not None
        return str(part.get_content())


def smtp_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A local SMTP server, the connection ``smtp_alerts`` to it, and ``[mlops]`` sending alerts there."""
    from aiosmtpd.controller import Controller

    received = Inbox()
    port = free_port()
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps(connection))
    monkeypatch.setenv("AIRFLOW__MLOPS__ALERT_SMTP_CONN_ID", "smtp_alerts")
    monkeypatch.setenv("AIRFLOW__MLOPS__ALERT_EMAIL_TO", "oncall@example.com, ml-team@example.com")
    monkeypatch.setenv("AIRFLOW__MLOPS__ALERTS_BASE_URL", "http://airflow.example.com:8080/")
    yield received
    controller.stop()

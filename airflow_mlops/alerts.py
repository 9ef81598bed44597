"""Alerts: the suite's events worth a person's attention, sent through Airflow notifiers.

Four events raise an alert: a monitor's breach (``drift``: ``ModelDriftAlertOperator``), a
failed gate (``gate_failed``: the evaluation gate, an experiment's gate), a canary or stepwise
rollout rolled back (``rolled_back``), and a version waiting for a person's approval
(``approval_pending``: ``ModelApprovalSensor``, once per version). Each alert has a one-line
title, the reasons, and links to its reports (absolute URLs of the plugin's pages under
``[mlops] alerts_base_url``, default ``[api] base_url``).

Who is told is configuration, not DAG code: ``[mlops] alert_email_to`` (comma-separated) sends
mail through the SMTP provider's ``SmtpNotifier`` and the connection ``[mlops]
alert_smtp_conn_id`` (default ``smtp_default``; host, port, login, from address), and
``[mlops] alert_slack_conn_id`` posts through the Slack provider's ``SlackWebhookNotifier`` (a
``slackwebhook`` connection; ``pip install apache-airflow-providers-slack``). An operator's
``notifiers=[...]`` (any Airflow notifiers) replaces them. A notifier renders its templates with
the task's context plus ``mlops_alert``: ``{"kind", "title", "subject", "reasons", "links",
"text", "html"}``, so a notifier of your own can say ``{{ mlops_alert.text }}``.

A notifier that fails is logged with its error and the alert's text; it never fails the task
whose outcome it reports (the drift event, the rollback and the gate's verdict stand).
"""

from __future__ import annotations

import copy
import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError

log = logging.getLogger(__name__)

KINDS = ("drift", "gate_failed", "rolled_back", "approval_pending")


@dataclass(frozen=True)
class Alert:
    """One event: ``kind`` (see :data:`KINDS`), a one-line ``title``, the ``reasons`` and the
    ``links`` (label -> URL, relative URLs made absolute with :func:`base_url`)."""

    kind: str
    title: str
    reasons: Sequence[str] = ()
    links: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MLOpsConfigError(f"alert kind must be one of {list(KINDS)}, got {self.kind!r}")

    @property
    def subject(self) -> str:
        return f"[airflow-mlops] {self.title}"

    def absolute_links(self) -> dict[str, str]:
        root = base_url()
        return {
            label: f"{root}{url}" if url.startswith("/") and root else url
            for label, url in self.links.items()
            if url
        }

    def text(self) -> str:
        lines = [self.title, *(f"- {r}" for r in self.reasons)]
        lines += [f"{label}: {url}" for label, url in self.absolute_links().items()]
        return "\n".join(lines)

    def html(self) -> str:
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        links = "".join(
            f"<li><a href='{html.escape(url, quote=True)}'>{html.escape(label)}</a></li>"
            for label, url in self.absolute_links().items()
        )
        return (
            f"<p><b>{html.escape(self.title)}</b></p>"
            + (f"<ul>{reasons}</ul>" if reasons else "")
            + (f"<p>Reports:</p><ul>{links}</ul>" if links else "")
        )

    def as_context(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "subject": self.subject,
            "reasons": list(self.reasons),
            "links": self.absolute_links(),
            "text": self.text(),
            "html": self.html(),
        }


def base_url() -> str:
    """Where links in alerts point: ``[mlops] alerts_base_url``, else ``[api] base_url`` ("" if neither)."""
    from airflow.sdk.configuration import conf

    from airflow_mlops import settings

    return (settings.alerts_base_url() or str(conf.get("api", "base_url", fallback="") or "")).rstrip("/")


def configured_notifiers() -> list[Any]:
    """The notifiers ``[mlops]`` configures: mail to ``alert_email_to`` and Slack through
    ``alert_slack_conn_id`` (empty when neither is set)."""
    from airflow_mlops import settings

    notifiers: list[Any] = []
    recipients = settings.alert_email_to()
    if recipients:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(
            SmtpNotifier(
                to=recipients,
                from_email=settings.alert_email_from(),
                smtp_conn_id=settings.alert_smtp_conn_id(),
                subject="{{ mlops_alert.subject }}",
                html_content="{{ mlops_alert.html }}",
            )
        )
    slack = settings.alert_slack_conn_id()
    if slack:
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
        except ImportError as err:
            raise MLOpsConfigError(
                f"[mlops] alert_slack_conn_id is {slack!r} but the Slack provider is not installed "
                "(pip install apache-airflow-providers-slack)"
            ) from err
        notifiers.append(SlackWebhookNotifier(slack_webhook_conn_id=slack, text="{{ mlops_alert.text }}"))
    return notifiers


def send(alert: Alert, context: Mapping[str, Any], notifiers: Sequence[Any] | None = None) -> int:
    """Send ``alert`` through ``notifiers`` (None: :func:`configured_notifiers`); returns how many
    sent it. Each notifier is copied first (rendering its templates changes it), called with the
    context plus ``mlops_alert``; one that fails is logged, with the alert's text, and skipped."""
    try:
        chosen = configured_notifiers() if notifiers is None else list(notifiers)
    except MLOpsConfigError as err:  # a misconfigured alert is reported, not a failed task
        log.error("alert not sent: %s: %s", err, alert.text())
        return 0
    if not chosen:
        log.info("alert (no notifier configured): %s", alert.text())
        return 0
    sent = 0
    for notifier in chosen:
        try:
            copy.deepcopy(notifier)({**context, "mlops_alert": alert.as_context()})
        except Exception as err:  # an alert that cannot be sent must not fail the task it reports on
            log.error(
                "alert not sent by %s (%s: %s): %s",
                type(notifier).__name__,
                type(err).__name__,
                err,
                alert.text(),
            )
            continue
        sent += 1
    log.info("alert sent by %d of %d notifier(s): %s", sent, len(chosen), alert.title)
    return sent


class AlertingMixin:
    """``notifiers=[...]`` for an operator that raises alerts (None: the ``[mlops]`` configuration's),
    and :meth:`alert` to send one. Listed first among an operator's bases: it takes ``notifiers``
    and hands the other arguments on."""

    notifiers: Sequence[Any] | None

    def __init__(self, *args: Any, notifiers: Sequence[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notifiers = list(notifiers) if notifiers is not None else None

    def alert(
        self,
        context: Mapping[str, Any],
        kind: str,
        title: str,
        reasons: Sequence[str] = (),
        links: Mapping[str, str] | None = None,
    ) -> int:
        """Send an alert (see :func:`send`); returns how many notifiers sent it."""
        return send(Alert(kind, title, tuple(reasons), dict(links or {})), context, self.notifiers)


def report_links(**uris: str | None) -> dict[str, str]:
    """``{label: plugin URL}`` of reports in the lake (a ``.json`` report's ``.html`` page); the
    label's underscores become spaces, reports that are None or "" are left out."""
    from airflow_mlops.links import report_url

    return {
        label.replace("_", " "): report_url(
            uri.removesuffix(".json") + ".html" if uri.endswith(".json") else uri
        )
        for label, uri in uris.items()
        if uri
    }


def rollback_links(endpoint: str, model: str | None, version: Any) -> dict[str, str]:
    """The Deployments page, and the version on the Models page when there is one."""
    from airflow_mlops.links import model_version_url

    links = {"deployments": "/mlops/deployments"}
    if model and version:
        links[f"{model} v{version}"] = model_version_url(model, version)
    return links

"""Failure alerts: Airflow notifiers on every task of every DAG of the package.

A task that fails for good (after its last retry) sends one alert naming the DAG, the
run, the task (and map index), the error and a link to the task's log in the Airflow
UI, by e-mail through an SMTP connection and/or as JSON to a webhook through an HTTP
connection. Configured by deployment-wide settings (environment variables, read when
the DAGs are parsed); with none of them set, no notifier is attached.

``LA_ALERT_EMAIL_TO``
    comma-separated recipients; e-mail alerts are off when empty.
``LA_ALERT_SMTP_CONN_ID`` (``smtp_default``)
    SMTP connection (host, port, login/password, ``extra.from_email``).
``LA_ALERT_EMAIL_FROM``
    sender, when the connection does not name one.
``LA_ALERT_WEBHOOK_CONN_ID``
    HTTP connection of the webhook (its host/schema/port is the URL); off when empty.
``LA_ALERT_WEBHOOK_ENDPOINT``
    path appended to the connection's URL (default: none).

The link is ``ti.log_url``: ``[api] base_url`` of the Airflow configuration
(``AIRFLOW__API__BASE_URL``) + ``/dags/<dag>/runs/<run>/tasks/<task>[/mapped/<i>]``.
"""

from __future__ import annotations

import html
import os
from dataclasses import asdict, dataclass
from typing import Any

from airflow.providers.http.notifications.http import HttpNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

#: Longest error text an alert carries (a traceback's last line is what matters).
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class FailureAlert:
    """What an alert says about one failed task instance."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    logical_date: str | None
    error: str
    log_url: str

    @classmethod
    def from_context(cls, context: Any) -> FailureAlert:
        ti = context["ti"]
        error = context.get("exception")
        error_text = f"{type(error).__name__}: {error}" if error is not None else "unknown error (see the log)"
        logical_date = context.get("logical_date")
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=ti.map_index if ti.map_index is not None else -1,
            try_number=ti.try_number,
            logical_date=logical_date.isoformat() if logical_date is not None else None,
            error=error_text[:MAX_ERROR_CHARS],
            log_url=ti.log_url,
        )

    @property
    def task_label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @property
    def subject(self) -> str:
        return f"[learning-analytics] {self.dag_id}: {self.task_label} failed ({self.run_id})"

    def as_html(self) -> str:
        rows = "".join(
            f"<tr><th align='left'>{name}</th><td>{html.escape(str(value))}</td></tr>"
            for name, value in (
                ("DAG", self.dag_id),
                ("run", self.run_id),
                ("logical date", self.logical_date),
                ("task", self.task_label),
                ("try", self.try_number),
                ("error", self.error),
            )
        )
        link = html.escape(self.log_url, quote=True)
        return f"<table>{rows}</table><p>Log: <a href='{link}'>{link}</a></p>"

    def as_json(self) -> dict[str, Any]:
        return {"event": "task_failed", "text": self.subject, **asdict(self)}


class EmailFailureNotifier(SmtpNotifier):
    """:class:`SmtpNotifier` whose subject and body are the :class:`FailureAlert`.

    The message is built after template rendering, so an error text that looks like
    Jinja is sent as it is.
    """

    def notify(self, context: Any) -> None:
        alert = FailureAlert.from_context(context)
        self.subject = alert.subject
        self.html_content = alert.as_html()
        super().notify(context)


class WebhookFailureNotifier(HttpNotifier):
    """:class:`HttpNotifier` that POSTs the :class:`FailureAlert` as JSON."""

    def notify(self, context: Any) -> None:
        self.json = FailureAlert.from_context(context).as_json()
        super().notify(context)


def failure_notifiers(env: dict[str, str] | None = None) -> list[Any]:
    """The notifiers the settings turn on (empty: alerts are off)."""
    env = dict(os.environ) if env is None else env
    notifiers: list[Any] = []
    recipients = [address.strip() for address in env.get("LA_ALERT_EMAIL_TO", "").split(",") if address.strip()]
    if recipients:
        notifiers.append(
            EmailFailureNotifier(
                to=recipients,
                from_email=env.get("LA_ALERT_EMAIL_FROM") or None,
                smtp_conn_id=env.get("LA_ALERT_SMTP_CONN_ID") or "smtp_default",
            )
        )
    webhook_conn_id = env.get("LA_ALERT_WEBHOOK_CONN_ID", "").strip()
    if webhook_conn_id:
        notifiers.append(
            WebhookFailureNotifier(
                http_conn_id=webhook_conn_id,
                endpoint=env.get("LA_ALERT_WEBHOOK_ENDPOINT") or None,
                headers={"Content-Type": "application/json"},
            )
        )
    return notifiers

"""Hook for the R plumber model services (r-brms-plumber, r-forecast-plumber, r-cluster-plumber).

Connection fields (an ``http`` connection, e.g. ``AIRFLOW_CONN_R_BRMS`` locally or the
secret ``airflow-connections-r_brms`` in GCP Secret Manager):

* ``host`` / ``port`` / ``schema``: where the service listens (``schema`` is the URL
  scheme, ``http`` or ``https``);
* ``password``: the service's bearer token (``R_SERVICE_TOKEN`` of the service);
* ``login``: leave empty. ``HttpHook`` would turn a login into Basic auth, which the
  services reject; this hook always sends ``Authorization: Bearer <password>``;
* ``extra``: nothing is needed. Unknown extra keys become HTTP headers in ``HttpHook``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook
from requests.auth import AuthBase

#: Statuses worth retrying: the service is busy or briefly broken, not the request.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class BearerTokenAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class RServiceError(Exception):
    """The R service answered with an error status."""

    def __init__(self, service: str, endpoint: str, status: int, message: str) -> None:
        self.service = service
        self.endpoint = endpoint
        self.status = status
        self.message = message
        super().__init__(f"{service} {endpoint} answered {status}: {message}")


class RServiceRequestError(RServiceError):
    """4xx: the request was wrong (bad input, bad token, unknown model); not retried."""


class RServiceUnavailableError(RServiceError):
    """429/5xx: retried with backoff, then raised."""


class RServiceHook(HttpHook):
    """JSON calls to an R model service with bearer auth, timeouts and retries.

    :param r_service_conn_id: Airflow connection of the service (see module docs).
    :param timeout_s: seconds to wait for one response (model fits can be long).
    :param max_attempts: attempts per call on connection errors, 429 and 5xx.
    :param backoff_s: first wait between attempts; doubles up to ``max_backoff_s``.
    """

    conn_name_attr = "r_service_conn_id"
    default_conn_name = "r_service_default"
    conn_type = "http"
    hook_name = "R model service"

    def __init__(
        self,
        r_service_conn_id: str = default_conn_name,
        *,
        timeout_s: float = 600.0,
        max_attempts: int = 4,
        backoff_s: float = 2.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        super().__init__(method="POST", http_conn_id=r_service_conn_id)
        self.r_service_conn_id = r_service_conn_id
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    def _extract_auth(self, connection: Any) -> AuthBase | None:
        return BearerTokenAuth(connection.password) if connection.password else None

    def call(self, endpoint: str, payload: dict[str, Any] | None = None, *, method: str = "POST") -> dict[str, Any]:
        """Send ``payload`` as JSON to ``endpoint`` and return the decoded JSON answer.

        :raises RServiceRequestError: on 4xx, carrying the service's ``error`` message.
        :raises RServiceUnavailableError: on 429/5xx once the attempts are used up.
        :raises requests.ConnectionError: when the service cannot be reached after
            the attempts (e.g. it is stopped).
        """
        self.method = method.upper()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            retry=tenacity.retry_if_exception_type(
                (requests.ConnectionError, requests.Timeout, RServiceUnavailableError)
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._call_once, endpoint, payload)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "%s: attempt %s/%s failed (%s); retrying in %.1f s",
            self.r_service_conn_id,
            state.attempt_number,
            self.max_attempts,
            error,
            state.next_action.sleep if state.next_action else 0.0,
        )

    def _call_once(self, endpoint: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        started = time.monotonic()
        body = None if payload is None else json.dumps(payload, allow_nan=False)
        response = self.run(
            endpoint=endpoint,
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            extra_options={"check_response": False, "timeout": self.timeout_s},
        )
        elapsed = time.monotonic() - started
        self.log.info(
            "%s %s %s -> %s in %.2f s (%s bytes sent)",
            self.r_service_conn_id,
            self.method,
            endpoint,
            response.status_code,
            elapsed,
            len(body or ""),
        )
        if response.status_code < 400:
            return response.json()
        message = _error_message(response)
        error_type = RServiceUnavailableError if response.status_code in RETRYABLE_STATUSES else RServiceRequestError
        raise error_type(self.r_service_conn_id, endpoint, response.status_code, message)

    def health(self) -> dict[str, Any]:
        """``GET /health`` (open, no token needed)."""
        return self.call("health", method="GET")

    def test_connection(self) -> tuple[bool, str]:
        try:
            status = self.health()
        except Exception as err:  # the UI shows the message
            return False, str(err)
        return True, f"{status.get('service', 'service')} is {status.get('status', 'up')}"


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        return error if isinstance(error, str) else json.dumps(error)
    return json.dumps(body)[:500]

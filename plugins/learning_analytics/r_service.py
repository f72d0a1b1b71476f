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

import hashlib
import json
import time
from typing import Any

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk.exceptions import AirflowFailException
from requests.auth import AuthBase

#: Statuses worth retrying: the service is busy, restarting or behind a failing proxy.
#: A 500 is the service's own bug: the same request would fail again.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: Job statuses after which a job never changes (SPEC 5, "Fits are jobs").
FINISHED_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class BearerTokenAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class RServiceError(Exception):
    """The R service answered with an error status."""

    def __init__(
        self, service: str, endpoint: str, status: int, message: str, retry_after_s: float | None = None
    ) -> None:
        self.service = service
        self.endpoint = endpoint
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
        super().__init__(f"{service} {endpoint} answered {status}: {message}")


class RServiceRequestError(RServiceError, AirflowFailException):
    """4xx (bad input, bad token, unknown model) or an application 500.

    Retrying the same request cannot help, so it is neither retried by the hook nor by
    Airflow: as an ``AirflowFailException`` it fails the task at once, with the
    service's message naming the field.
    """


class RServiceUnavailableError(RServiceError):
    """429/502/503/504 or a lost job: retried with backoff, then raised (task retries apply)."""


def idempotency_key(dag_id: str, run_id: str, task_id: str, map_index: int, payload: dict[str, Any]) -> str:
    """The Idempotency-Key of one task's fit: the same for every try and poke of the task.

    The body's digest is part of it, so a re-extracted shard with other data (a cleared
    run after the warehouse changed) gets a new job instead of a 422 from the service.
    """
    digest = hashlib.sha256(_json_body(payload).encode()).hexdigest()[:16]
    return f"{dag_id}/{run_id}/{task_id}/{map_index}/{digest}"


def _json_body(payload: dict[str, Any]) -> str:
    return json.dumps(payload, allow_nan=False)


class RServiceHook(HttpHook):
    """JSON calls to an R model service with bearer auth, timeouts and retries, and its fit jobs.

    :param r_service_conn_id: Airflow connection of the service (see module docs).
    :param timeout_s: seconds to wait for one response (predicts can take a while; a fit
        submit answers at once, the fit itself runs as a job).
    :param max_attempts: attempts per call on connection errors, 429, 502, 503 and 504.
    :param backoff_s: first wait between attempts; doubles up to ``max_backoff_s``
        (a ``Retry-After`` from the service is honoured up to ``max_backoff_s``).
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

    def call(
        self,
        endpoint: str,
        payload: dict[str, Any] | None = None,
        *,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send ``payload`` as JSON to ``endpoint`` and return the decoded JSON answer.

        :raises RServiceRequestError: on 4xx or 500, carrying the service's ``error`` message.
        :raises RServiceUnavailableError: on 429/502/503/504 once the attempts are used up.
        :raises requests.ConnectionError: when the service cannot be reached after
            the attempts (e.g. it is stopped).
        """
        self.method = method.upper()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(
                (requests.ConnectionError, requests.Timeout, RServiceUnavailableError)
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._call_once, endpoint, payload, headers or {})

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = tenacity.wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after_s", None)
        return min(max(backoff, retry_after or 0.0), self.max_backoff_s)

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

    def _call_once(self, endpoint: str, payload: dict[str, Any] | None, headers: dict[str, str]) -> dict[str, Any]:
        started = time.monotonic()
        body = None if payload is None else _json_body(payload)
        response = self.run(
            endpoint=endpoint,
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
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
        if response.status_code in RETRYABLE_STATUSES:
            raise RServiceUnavailableError(
                self.r_service_conn_id, endpoint, response.status_code, message, _retry_after(response)
            )
        raise RServiceRequestError(self.r_service_conn_id, endpoint, response.status_code, message)

    # -- fit jobs (SPEC 5: 202 + /jobs/<id>) ---------------------------------------------

    def submit(self, endpoint: str, payload: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a fit job; ``{"job_id", "status"}``. With a key already used for this body,
        the service answers with that job (a lost one is replaced by a new attempt)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job = self.call(endpoint, payload, headers=headers)
        self.log.info("%s %s: job %s is %s", self.r_service_conn_id, endpoint, job["job_id"], job["status"])
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/<job_id>``: status, progress, and the result once succeeded."""
        return self.call(f"jobs/{job_id}", method="GET")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``DELETE /jobs/<job_id>``."""
        return self.call(f"jobs/{job_id}", method="DELETE")

    def job_result(self, job: dict[str, Any], endpoint: str = "jobs") -> dict[str, Any] | None:
        """The fit response of a finished job; ``None`` while it is queued or running.

        :raises RServiceUnavailableError: the job lost its worker (submit again).
        :raises RServiceRequestError: the job failed on its input or a bug, or was cancelled.
        """
        status = job["status"]
        if status not in FINISHED_JOB_STATUSES:
            return None
        if status == "succeeded":
            return job["result"]
        endpoint = f"{endpoint} job {job['job_id']}"
        if status == "cancelled":
            raise RServiceRequestError(self.r_service_conn_id, endpoint, 409, "job: cancelled")
        error = job.get("error") or {}
        error_status = int(error.get("status", 500))
        error_type = RServiceUnavailableError if error_status in RETRYABLE_STATUSES else RServiceRequestError
        raise error_type(self.r_service_conn_id, endpoint, error_status, str(error.get("error", "job failed")))

    def fit(
        self,
        endpoint: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout_s: float = 3600.0,
        poll_s: float = 2.0,
    ) -> dict[str, Any]:
        """Submit a fit and wait for its result (for callers that may block, e.g. benchmarks).

        A job that lost its worker is submitted again under the same key (a new attempt),
        at most ``max_attempts`` times; waiting longer than ``timeout_s`` raises
        ``TimeoutError`` and leaves the job running, so calling again re-attaches to it.
        """
        # A key even for a one-off call: the hook's own retry of a submit whose answer
        # was lost must not start a second job.
        key = idempotency_key or f"fit/{time.time_ns()}/{hashlib.sha256(_json_body(payload).encode()).hexdigest()[:16]}"
        deadline = time.monotonic() + timeout_s
        attempt = 1
        job = self.submit(endpoint, payload, idempotency_key=key)
        while True:
            try:
                result = self.job_result(self.job(job["job_id"]), endpoint)
            except RServiceUnavailableError:
                if attempt >= self.max_attempts:
                    raise
                attempt += 1
                self.log.warning("%s: job %s lost its worker; submitting again", endpoint, job["job_id"])
                job = self.submit(endpoint, payload, idempotency_key=key)
                continue
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{endpoint}: job {job['job_id']} did not finish within {timeout_s:.0f} s")
            time.sleep(poll_s)

    def health(self) -> dict[str, Any]:
        """``GET /health`` (open, no token needed)."""
        return self.call("health", method="GET")

    def test_connection(self) -> tuple[bool, str]:
        try:
            status = self.health()
        except Exception as err:  # the UI shows the message
            return False, str(err)
        return True, f"{status.get('service', 'service')} is {status.get('status', 'up')}"


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        return error if isinstance(error, str) else json.dumps(error)
    return json.dumps(body)[:500]

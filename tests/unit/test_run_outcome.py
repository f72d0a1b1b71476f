"""What counts as a run that did its job (the demo's and the tests' outcome check)."""

from __future__ import annotations

import pytest

from learning_analytics.run_outcome import RunOutcome

DONE = {"extract": "success", "fit[0]": "success", "persist": "success"}


def outcome(state: str | None = "success", tasks: dict | None = None, skip: str | None = None) -> RunOutcome:
    return RunOutcome(
        dag_id="d", run_id="r", state=state, task_states=DONE if tasks is None else tasks, skip_reason=skip
    )


def test_a_successful_run_with_every_task_done_did_its_job() -> None:
    assert outcome().finished_ok and outcome().problems == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (outcome(state="failed"), "ended failed"),
        (outcome(tasks={**DONE, "extract": "failed", "persist": "upstream_failed"}), "extract=failed"),
        (outcome(tasks={**DONE, "persist": None}), "persist=None"),
        (outcome(tasks={"extract": "skipped", "persist": "skipped"}), "every task was skipped"),
        (outcome(skip="12 students, at least 20 needed"), "the fit was skipped: 12 students"),
        (RunOutcome(dag_id="d", run_id=None, state=None), "no run found"),
    ],
)
def test_a_run_that_did_nothing_is_reported_with_the_reason(case: RunOutcome, expected: str) -> None:
    assert any(expected in problem for problem in case.problems), case.problems


def test_a_skipped_fit_finishes_ok_but_is_not_work_done() -> None:
    skipped = outcome(skip="too little data")
    assert skipped.finished_ok and skipped.problems

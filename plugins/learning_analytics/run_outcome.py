"""Did a DAG run do its job? Read from Airflow's metadata database, not from exit codes.

``airflow dags test`` can exit 0 for a run that did nothing (the scheduler timed the run
out under it, ``extract`` failed and the run was marked failed elsewhere, or every fit
was skipped). The demo and the tests therefore check the newest run of a DAG for a
logical date: the run's final state, each task instance's state, and for the model DAGs
whether ``extract`` skipped the fit (its recorded skip reason).

    python -m learning_analytics.run_outcome --dag-id fit_bayesian_growth --logical-date 2026-11-23

prints one line per task and exits 1 with the reason when the run did not do its job.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

#: Task states of a run that did its job.
DONE_STATES = frozenset({"success", "skipped"})
#: XCom key of the extract's outcome (kept equal to pipeline.EXTRACT_OUTCOME_KEY without
#: importing the DAG machinery).
EXTRACT_OUTCOME_KEY = "extract_outcome"


@dataclass(frozen=True)
class RunOutcome:
    dag_id: str
    run_id: str | None
    state: str | None
    #: task label ("fit[3]" for a mapped instance) -> state
    task_states: dict[str, str | None] = field(default_factory=dict)
    skip_reason: str | None = None

    @property
    def finished_ok(self) -> bool:
        """The run succeeded and every task instance ended success or skipped."""
        return self.state == "success" and all(state in DONE_STATES for state in self.task_states.values())

    @property
    def problems(self) -> list[str]:
        """Why the run did not do its job (empty: it did), a skipped fit included."""
        if self.run_id is None:
            return [f"{self.dag_id}: no run found"]
        problems = []
        if self.state != "success":
            problems.append(f"run {self.run_id} ended {self.state}")
        unfinished = {task: state for task, state in self.task_states.items() if state not in DONE_STATES}
        if unfinished:
            problems.append("tasks not done: " + ", ".join(f"{t}={s}" for t, s in sorted(unfinished.items())))
        if self.task_states and all(state == "skipped" for state in self.task_states.values()):
            problems.append("every task was skipped")
        if self.skip_reason:
            problems.append(f"the fit was skipped: {self.skip_reason}")
        return problems

    def report(self) -> str:
        lines = [f"{self.dag_id} {self.run_id}: {self.state}"]
        lines += [f"  {task}: {state}" for task, state in sorted(self.task_states.items())]
        return "\n".join(lines)


def latest_run_outcome(dag_id: str, logical_date: date) -> RunOutcome:
    """Outcome of the most recently created run of ``dag_id`` whose logical date falls on
    ``logical_date`` (UTC)."""
    from airflow.models import DagRun, TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    start = datetime.combine(logical_date, time.min, tzinfo=UTC)
    end = datetime.combine(logical_date, time.max, tzinfo=UTC)
    with create_session() as session:
        run = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.logical_date >= start, DagRun.logical_date <= end)
            .order_by(DagRun.id.desc())
            .limit(1)
        ).first()
        if run is None:
            return RunOutcome(dag_id=dag_id, run_id=None, state=None)
        instances = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        ).all()
        task_states = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (
                str(ti.state.value if hasattr(ti.state, "value") else ti.state) if ti.state else None
            )
            for ti in instances
        }
        outcome = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == "extract",
                XComModel.key == EXTRACT_OUTCOME_KEY,
            )
        ).first()
        skip_reason = XComModel.deserialize_value(_Row(outcome)).get("skip_reason") if outcome is not None else None
        state = run.state.value if hasattr(run.state, "value") else run.state
        return RunOutcome(
            dag_id=dag_id, run_id=run.run_id, state=state, task_states=task_states, skip_reason=skip_reason
        )


@dataclass(frozen=True)
class _Row:
    """What ``XComModel.deserialize_value`` reads from a row: its ``value``."""

    value: object


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--logical-date", required=True, type=date.fromisoformat)
    args = parser.parse_args(argv)
    outcome = latest_run_outcome(args.dag_id, args.logical_date)
    print(outcome.report())
    if outcome.problems:
        print(f"{args.dag_id} {args.logical_date}: did not do its job: " + "; ".join(outcome.problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The whole test suite on the real stack: set-up (idempotent), static checks
# (scripts/lint.sh: ruff, shellcheck), R testthat suites, then pytest (unit, DAG
# integrity, integration against PostgreSQL and the R services, `airflow dags test`
# runs). Reports every failing step, then exits non-zero if any failed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO_ROOT/scripts/bootstrap.sh"

# Static checks first (seconds); their findings fail the run at the end, like the tests.
status=0
bash "$REPO_ROOT/scripts/lint.sh" || status=1

# Databases of its own, recreated each run, so tests never see stale rows, and an
# env file of its own, so the developer stack's .local/stack.env stays untouched.
export LA_DB_NAME="${LA_TEST_DB_NAME:-analytics_test}" LA_AIRFLOW_DB_NAME="${LA_TEST_AIRFLOW_DB_NAME:-airflow_test}"
export LA_FRESH_DB=1 LA_STACK_ENV="$LOCAL_DIR/test-stack.env"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck source=/dev/null
source "$LA_STACK_ENV"

log "R: testthat suites of the services"
"$REPO_ROOT/r-services/run-tests" || status=1

log "Python: pytest"
cd "$REPO_ROOT"
python -m pytest "$@" || status=1

if ((status)); then log "tests: FAILED"; else log "tests: all passed"; fi
exit "$status"

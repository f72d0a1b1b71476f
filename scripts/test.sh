#!/usr/bin/env bash
# The whole test suite on the real stack: set-up (idempotent), R testthat suites,
# then pytest (unit, DAG integrity, integration against PostgreSQL and the R
# services, `airflow dags test` runs). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO_ROOT/scripts/bootstrap.sh"
# Databases of its own, recreated each run, so tests never see stale rows, and an
# env file of its own, so the developer stack's .local/stack.env stays untouched.
export LA_DB_NAME="${LA_TEST_DB_NAME:-analytics_test}" LA_AIRFLOW_DB_NAME="${LA_TEST_AIRFLOW_DB_NAME:-airflow_test}"
export LA_FRESH_DB=1 LA_STACK_ENV="$LOCAL_DIR/test-stack.env"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LA_STACK_ENV"

status=0
log "R: testthat suites of the services"
"$REPO_ROOT/r-services/run-tests" || status=1

log "Python: pytest"
cd "$REPO_ROOT"
python -m pytest "$@" || status=1

if ((status)); then log "tests: FAILED"; else log "tests: all passed"; fi
exit "$status"

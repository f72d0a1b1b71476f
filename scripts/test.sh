#!/usr/bin/env bash
# The whole test suite on the real stack: set-up (idempotent), R testthat suites,
# then pytest (unit, DAG integrity, integration against PostgreSQL and the R
# services, `airflow dags test` runs). Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO_ROOT/scripts/bootstrap.sh"
# A database of its own, recreated each run, so tests never see stale rows.
export LA_DB_NAME=analytics_test LA_AIRFLOW_DB_NAME=airflow_test LA_FRESH_DB=1
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LOCAL_DIR/stack.env"

status=0
log "R: testthat suites of the services"
"$REPO_ROOT/r-services/run-tests" || status=1

log "Python: pytest"
cd "$REPO_ROOT"
python -m pytest "$@" || status=1

if ((status)); then log "tests: FAILED"; else log "tests: all passed"; fi
exit "$status"

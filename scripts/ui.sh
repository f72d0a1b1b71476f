#!/usr/bin/env bash
# Airflow's UI on the local stack: http://localhost:${LA_UI_PORT:-8080} (every DAG
# listed; trigger runs and backfills there) and the "Learning analytics" view of the
# models' results at /learning-analytics/ (an Airflow plugin, also in the UI's
# navigation). Runs `airflow standalone` in the foreground; Ctrl-C stops it.
# LA_UI_PORT moves it (two checkouts on one host).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO_ROOT/scripts/bootstrap.sh"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LOCAL_DIR/stack.env"
cd "$REPO_ROOT"
UI_PORT="${LA_UI_PORT:-8080}"
export AIRFLOW__API__PORT="$UI_PORT" AIRFLOW__API__BASE_URL="http://localhost:$UI_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$UI_PORT/execution/"
# Load plugins at start-up, so the view's navigation entry is there from the first page.
export AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False
log "Airflow UI on http://localhost:$UI_PORT (local dev: every user is admin)"
log "Learning analytics view on http://localhost:$UI_PORT/learning-analytics/ (results of the models)"
exec airflow standalone

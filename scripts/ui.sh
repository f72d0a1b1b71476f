#!/usr/bin/env bash
# Airflow's UI on the local stack: http://localhost:${LA_UI_PORT:-8080} (every DAG
# listed; trigger runs and backfills there). Runs `airflow standalone` in the
# foreground; Ctrl-C stops it. LA_UI_PORT moves it (two checkouts on one host).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO_ROOT/scripts/bootstrap.sh"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LOCAL_DIR/stack.env"
cd "$REPO_ROOT"
UI_PORT="${LA_UI_PORT:-8080}"
export AIRFLOW__API__PORT="$UI_PORT" AIRFLOW__API__BASE_URL="http://localhost:$UI_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$UI_PORT/execution/"
log "Airflow UI on http://localhost:$UI_PORT (local dev: every user is admin)"
exec airflow standalone

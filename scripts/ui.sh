#!/usr/bin/env bash
# Airflow's UI on the local stack: http://localhost:8080 (every DAG listed; trigger
# runs and backfills there). Runs `airflow standalone` in the foreground; Ctrl-C stops it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO_ROOT/scripts/bootstrap.sh"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LOCAL_DIR/stack.env"
cd "$REPO_ROOT"
log "Airflow UI on http://localhost:8080 (local dev: every user is admin)"
exec airflow standalone

#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is missing, start
# PostgreSQL and the R services, apply the schema, load synthetic learners, run
# every DAG with `airflow dags test` for one logical date, and print what each wrote.
# Idempotent: a second run reloads the same synthetic data and replaces every row.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOGICAL_DATE="${DEMO_LOGICAL_DATE:-2026-11-23}"   # a Monday; synthetic data end the day before
STUDENTS="${DEMO_STUDENTS:-400}"
WEEKS="${DEMO_WEEKS:-16}"

bash "$REPO_ROOT/scripts/bootstrap.sh"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LOCAL_DIR/stack.env"
cd "$REPO_ROOT"

log "loading $STUDENTS synthetic students x $WEEKS weeks ending $LOGICAL_DATE"
python -m learning_analytics.synthetic --students "$STUDENTS" --weeks "$WEEKS" --seed 42 \
  --end-date "$LOGICAL_DATE"

# The metrics job first (over the whole synthetic history, as a backfill would),
# then the models in their scheduled order.
run_dag() {
  local dag_id="$1" conf="$2" logfile="$LOCAL_DIR/logs/demo-$1.log"
  log "airflow dags test $dag_id $LOGICAL_DATE $conf (log: $logfile)"
  if ! airflow dags test "$dag_id" "$LOGICAL_DATE" -c "$conf" >"$logfile" 2>&1; then
    grep -E "ERROR|Error|error" "$logfile" | tail -n 20 >&2
    die "$dag_id failed; full log in $logfile"
  fi
}
run_dag build_features_topic_daily "{\"FEATURES_LOOKBACK_DAYS\": $((WEEKS * 7))}"
run_dag build_weekly_kpi "{\"KPI_LOOKBACK_WEEKS\": $WEEKS}"
for dag_id in fit_bayesian_growth forecast_prophet fit_survival_churn cluster_segments; do
  [[ -f "dags/$dag_id.py" ]] && run_dag "$dag_id" '{}'
done

python -m learning_analytics.report --run-date "$LOGICAL_DATE"
log "demo: done. Open the UI with: bash scripts/ui.sh"

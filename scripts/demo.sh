#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is missing, start
# PostgreSQL and the R services, apply the schema, load synthetic learners whose
# history continues past the run date, run every DAG with `airflow dags test` for
# that date, let the future happen, score the models on it (evaluate_models) and
# print what each DAG wrote and the scoreboard.
# Idempotent: a second run reloads the same synthetic data and replaces every row.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOGICAL_DATE="${DEMO_LOGICAL_DATE:-2026-11-23}"   # a Monday: the models' run date
STUDENTS="${DEMO_STUDENTS:-400}"
WEEKS="${DEMO_WEEKS:-16}"                         # history before the run date
FUTURE_WEEKS="${DEMO_FUTURE_WEEKS:-8}"            # what happens after it, scored by evaluate_models
EVALUATION_DATE="$(date -u -d "$LOGICAL_DATE + $((FUTURE_WEEKS * 7)) days" +%F)"
EARLIER_CLUSTER_DATE="$(date -u -d "$LOGICAL_DATE - 14 days" +%F)"

bash "$REPO_ROOT/scripts/bootstrap.sh"
bash "$REPO_ROOT/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$LOCAL_DIR/stack.env"
cd "$REPO_ROOT"

log "loading $STUDENTS synthetic students: $WEEKS weeks before $LOGICAL_DATE and $FUTURE_WEEKS after it"
python -m learning_analytics.synthetic --students "$STUDENTS" --weeks "$WEEKS" --future-weeks "$FUTURE_WEEKS" \
  --seed 42 --end-date "$LOGICAL_DATE"

# A run counts when Airflow recorded it as done, not when the command exits 0: the run
# and each of its tasks must have ended success/skipped, and a model run must have
# fitted (learning_analytics.run_outcome reads the metadata database and says why not).
run_dag() {
  local dag_id="$1" run_date="$2" conf="$3" logfile="$LOCAL_DIR/logs/demo-$1-$2.log"
  log "airflow dags test $dag_id $run_date $conf (log: $logfile)"
  if ! airflow dags test "$dag_id" "$run_date" -c "$conf" >"$logfile" 2>&1; then
    { grep -E "ERROR|Error|error" "$logfile" || tail -n 20 "$logfile"; } | tail -n 20 >&2
    die "$dag_id failed; full log in $logfile"
  fi
  if ! python -m learning_analytics.run_outcome --dag-id "$dag_id" --logical-date "$run_date" \
    >>"$logfile" 2>"$logfile.outcome"; then
    cat "$logfile.outcome" >&2
    die "$dag_id $run_date exited 0 but did not do its job (above); full log in $logfile"
  fi
  rm -f "$logfile.outcome"
}
# The metrics job first (over the whole history, as a backfill would), then the
# models in their scheduled order. None of them reads anything at or after the run date.
run_dag build_features_topic_daily "$LOGICAL_DATE" "{\"FEATURES_LOOKBACK_DAYS\": $((WEEKS * 7))}"
run_dag build_weekly_kpi "$LOGICAL_DATE" "{\"KPI_LOOKBACK_WEEKS\": $WEEKS}"
for dag_id in fit_bayesian_growth forecast_prophet fit_survival_churn; do
  run_dag "$dag_id" "$LOGICAL_DATE" '{}'
done
# Segment stability is judged between consecutive runs: an earlier one first.
run_dag cluster_segments "$EARLIER_CLUSTER_DATE" '{}'
run_dag cluster_segments "$LOGICAL_DATE" '{}'

# The future happens: the weekly KPI of the realized weeks, then the scoreboard.
run_dag build_weekly_kpi "$EVALUATION_DATE" "{\"KPI_LOOKBACK_WEEKS\": $FUTURE_WEEKS}"
run_dag evaluate_models "$EVALUATION_DATE" '{}'

python -m learning_analytics.report --run-date "$LOGICAL_DATE" --scoreboard-date "$EVALUATION_DATE"
log "demo: done. Open the UI with: bash scripts/ui.sh"

#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before the tests (and alone: bash scripts/lint.sh):
# ruff (lint + format, ruff.toml) on the Python code and shellcheck (.shellcheckrc) on
# every shell script. Runs every check, reports all findings, then exits non-zero if
# any check found something. Needs the venv (scripts/bootstrap.sh) and shellcheck.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Every shell script of the repository: scripts/, the R service runners, CI, deploy hooks.
shell_scripts=(
  scripts/*.sh
  r-services/run-service
  r-services/run-tests
  .ci/run
  deploy/compose/initdb/*.sh
)

status=0
log "lint: ruff check"
"$VENV_DIR/bin/ruff" check . || status=1
log "lint: ruff format --check"
"$VENV_DIR/bin/ruff" format --check . || status=1
log "lint: shellcheck ${#shell_scripts[@]} scripts"
shellcheck "${shell_scripts[@]}" || status=1

if ((status)); then log "lint: FAILED (findings above)"; else log "lint: clean"; fi
exit "$status"

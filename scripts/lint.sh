#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before the tests (and alone: bash scripts/lint.sh):
# ruff (lint + format, ruff.toml) on the Python code, shellcheck (.shellcheckrc) on
# every shell script and lintr (r-services/.lintr) on the R code. Runs every check,
# reports all findings, then exits non-zero if any check found something. Needs the
# venv (scripts/bootstrap.sh) and the Debian packages shellcheck and r-cran-lintr.
#
# lintr runs its defaults with three changes: lines up to 120 characters (as ruff);
# no object_usage_linter, because a service's files are sourced into one environment
# whose parent is the rservicecommon namespace, so lintr sees every cross-file call
# as undefined; no cyclocomp_linter (long units are tracked in issue 17) and no
# commented_code_linter (usage examples in comments). No R file is excluded.
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
log "lint: lintr r-services"
Rscript --vanilla -e 'lints <- lintr::lint_dir("r-services"); print(lints); quit(status = as.integer(length(lints) > 0))' \
  || status=1

if ((status)); then log "lint: FAILED (findings above)"; else log "lint: clean"; fi
exit "$status"

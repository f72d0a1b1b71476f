#!/usr/bin/env bash
# Installs r-services/common as the R package `rservicecommon` into the
# checkout's R library (default .local/R-library; R_SERVICES_LIBRARY or the
# first argument override it), where r-services/run-service and run-tests find
# it. Idempotent: skips the install when the library holds a build of the same
# sources (a hash of DESCRIPTION, NAMESPACE, R/, man/ and inst/ kept in a stamp
# file), so callers run it before every start. The Docker images install the
# package into the site library with `R CMD INSTALL` instead.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg_dir="$repo_root/r-services/common"
lib="${1:-${R_SERVICES_LIBRARY:-$repo_root/.local/R-library}}"
stamp="$lib/rservicecommon.source-sha256"

source_hash() {
  (cd "$pkg_dir" && find DESCRIPTION NAMESPACE R man inst -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

up_to_date() {
  [[ -f "$stamp" && -f "$lib/rservicecommon/DESCRIPTION" && "$(cat "$stamp")" == "$1" ]]
}

want="$(source_hash)"
up_to_date "$want" && exit 0
mkdir -p "$lib"
# Concurrent callers (three services starting at once, a test run) install once.
exec 9>"$lib/.rservicecommon.lock"
flock 9
up_to_date "$want" && exit 0
echo "install-r-common: installing rservicecommon into $lib" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! R CMD INSTALL --no-multiarch --library="$lib" "$pkg_dir" >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-r-common: R CMD INSTALL failed" >&2
  exit 1
fi
echo "$want" >"$stamp"

#!/usr/bin/env bash
# Installs r-services/common as the R package `rservicecommon` into the
# checkout's R library (default .local/R-library; R_SERVICES_LIBRARY or the
# first argument override it), where r-services/run-service and run-tests find
# it. Each build of the sources gets its own library, <library>/<source hash>,
# and <library>/current points at the newest: a service started earlier keeps
# the copy it loaded (its workers too), never a package replaced under it.
# Idempotent: when the sources (DESCRIPTION, NAMESPACE, R/, man/, inst/) are
# unchanged it only checks the link, so callers run it before every start. The
# three newest builds are kept. The Docker images install the package into the
# site library with `R CMD INSTALL` instead.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg_dir="$repo_root/r-services/common"
root="${1:-${R_SERVICES_LIBRARY:-$repo_root/.local/R-library}}"

want="$(cd "$pkg_dir" && find DESCRIPTION NAMESPACE R man inst -type f -print0 |
  sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
target="$root/$want"

link_current() {
  ln -sfn "$want" "$root/current.$$"
  mv -T "$root/current.$$" "$root/current"
}

if [[ -f "$target/rservicecommon/DESCRIPTION" && "$(readlink "$root/current" 2>/dev/null)" == "$want" ]]; then
  exit 0
fi
mkdir -p "$root"
# Concurrent callers (three services starting at once, a test run) install once.
exec 9>"$root/.lock"
flock 9
if [[ ! -f "$target/rservicecommon/DESCRIPTION" ]]; then
  echo "install-r-common: installing rservicecommon into $target" >&2
  partial="$root/.partial-$want"
  rm -rf "$partial"
  mkdir -p "$partial"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  if ! R CMD INSTALL --no-multiarch --library="$partial" "$pkg_dir" >"$log" 2>&1; then
    cat "$log" >&2
    rm -rf "$partial"
    echo "install-r-common: R CMD INSTALL failed" >&2
    exit 1
  fi
  mv -T "$partial" "$target"
fi
link_current
# Keep the three newest builds (a service still running an older one keeps its
# files open; it is restarted by stack.sh when its code hash changes).
find "$root" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' -printf '%T@ %p\n' |
  sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do rm -rf "$old"; done

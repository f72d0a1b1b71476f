# Shared helpers of the local-stack scripts. Source it; do not run it.
# shellcheck shell=bash
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${LA_LOCAL_DIR:-$REPO_ROOT/.local}"
VENV_DIR="${LA_VENV_DIR:-$REPO_ROOT/.venv}"
export REPO_ROOT LOCAL_DIR VENV_DIR

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run as root directly, otherwise through sudo (apt, the PostgreSQL cluster).
as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Packages listed in a file (comments and blank lines ignored).
package_list() { grep -Ev '^\s*(#|$)' "$1"; }

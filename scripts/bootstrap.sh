#!/usr/bin/env bash
# Install what the local stack needs, idempotently: Debian packages (system, R) and
# a Python venv with requirements.txt. Safe to run again; skips what is in place.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_apt_packages() {
  local missing=()
  mapfile -t wanted < <(package_list "$REPO_ROOT/scripts/apt-packages.txt")
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "apt: system packages present"
  fi
  # The same script the R service images run, so CI exercises the image's steps.
  as_root bash "$REPO_ROOT/scripts/install-r-packages.sh"
}

# The services' shared code, the R package rservicecommon, into the checkout's
# .local/R-library (as the user: run-service and run-tests read it from there).
install_r_common() {
  bash "$REPO_ROOT/scripts/install-r-common.sh"
  log "R: rservicecommon installed from r-services/common"
}

install_python_env() {
  local stamp="$VENV_DIR/.requirements.sha256" want
  want="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
  if [[ -x "$VENV_DIR/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "venv: $VENV_DIR matches requirements.txt"
    return
  fi
  log "venv: installing requirements.txt into $VENV_DIR (a few minutes the first time)"
  [[ -x "$VENV_DIR/bin/python" ]] || python3 -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install -q --upgrade pip
  "$VENV_DIR/bin/pip" install -q -r "$REPO_ROOT/requirements.txt"
  echo "$want" >"$stamp"
}

install_apt_packages
install_r_common
install_python_env
log "bootstrap: done"

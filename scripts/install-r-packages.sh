#!/usr/bin/env bash
# Install the R services' Debian packages (scripts/r-packages.txt) if any is missing.
# Run as root. Shared by scripts/bootstrap.sh and the R service Dockerfiles, so CI
# exercises the same installation step as the images. CRAN is never contacted:
# every R package comes prebuilt from Debian.
set -euo pipefail
list="${1:-$(dirname "${BASH_SOURCE[0]}")/r-packages.txt}"
mapfile -t wanted < <(grep -Ev '^\s*(#|$)' "$list")
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "R packages: all ${#wanted[@]} present" >&2
  exit 0
fi
echo "R packages: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Checks the Debian packages dml needs and installs the missing ones when run as root;
# otherwise prints the exact apt-get line to run. Usage: scripts/deps.sh [build|test|demo|bench]
# Optional packages (FAISS for approximate search, and g++ to wrap it) are tried as well; when
# they cannot be installed dml builds without them, so that is a warning, not a failure.
set -euo pipefail

purpose=${1:-build}
pkgs=(cmake make gcc pkg-config libopenblas-dev libopenblas-openmp-dev libcjson-dev libstb-dev zlib1g-dev libomp-dev)
optional=()
case "$purpose" in
  build) ;;
  test) pkgs+=(clang); optional+=(g++ libfaiss-dev) ;;
  demo) pkgs+=(dataset-fashion-mnist); optional+=(g++ libfaiss-dev) ;;
  bench) pkgs+=(dataset-fashion-mnist python3-torch python3-numpy python3-faiss python3-sklearn) ;;
  *) echo "usage: $0 [build|test|demo|bench]" >&2; exit 2 ;;
esac

not_installed() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t missing < <(not_installed "${pkgs[@]}")
mapfile -t missing_opt < <(not_installed ${optional[@]+"${optional[@]}"})
[ ${#missing[@]} -eq 0 ] && [ ${#missing_opt[@]} -eq 0 ] && exit 0

warn_optional() {
  echo "dml: warning: optional Debian packages not installed: $*" >&2
  echo "  (approximate search through FAISS stays off; to enable it:" \
    "sudo apt-get install -y $*)" >&2
}

if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  updated=0
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dml: installing missing Debian packages: ${missing[*]}"
    apt-get update -qq
    updated=1
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [ ${#missing_opt[@]} -gt 0 ]; then
    echo "dml: installing optional Debian packages: ${missing_opt[*]}"
    if { [ $updated -eq 1 ] || apt-get update -qq; } &&
       apt-get install -y -qq --no-install-recommends "${missing_opt[@]}"; then
      :
    else
      warn_optional "${missing_opt[@]}"
    fi
  fi
else
  [ ${#missing_opt[@]} -gt 0 ] && warn_optional "${missing_opt[@]}"
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dml: missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
exit 0

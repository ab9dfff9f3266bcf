#!/usr/bin/env bash
# Checks the Debian packages dml needs and installs the missing ones when run as root;
# otherwise prints the exact apt-get line to run. Usage: scripts/deps.sh [build|test|demo|bench]
set -euo pipefail

purpose=${1:-build}
pkgs=(cmake make gcc pkg-config libopenblas-dev libopenblas-openmp-dev libcjson-dev zlib1g-dev libomp-dev)
case "$purpose" in
  build) ;;
  test) pkgs+=(clang) ;;
  demo) pkgs+=(dataset-fashion-mnist) ;;
  bench) pkgs+=(dataset-fashion-mnist python3-torch python3-numpy python3-faiss) ;;
  *) echo "usage: $0 [build|test|demo|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "dml: installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "dml: missing Debian packages. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

#!/usr/bin/env bash
# Installs the servers the tests talk to (redis-server, prometheus, alertmanager with promtool/amtool) and
# wrk for benchmarks, from Debian packages, when they are missing. Without root or apt it says what is
# missing and carries on: the test tiers that need them then skip loudly (and fail in CI).
set -euo pipefail
declare -A package_for=(
  [redis-server]=redis-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [wrk]=wrk
)
missing=()
for binary in "${!package_for[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${package_for[$binary]}")
done
[ ${#missing[@]} -eq 0 ] && { echo "system-deps: all present"; exit 0; }
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || $sudo true 2>/dev/null; }; then
  echo "system-deps: installing $packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
  # Debian starts the packaged services; tests start their own on free ports.
  for service in redis-server prometheus prometheus-alertmanager; do
    $sudo service "$service" stop >/dev/null 2>&1 || true
  done
else
  echo "system-deps: WARNING missing $packages (install them with your package manager); tests needing them will skip" >&2
fi

#!/usr/bin/env bash
# End to end on kind (`make e2e`): for each KServe deployment mode, create a kind cluster with a GPU-labelled
# node, install the pinned dependencies, build and load the images, and run the pytest tests in e2e/ against
# the chart. Needs Docker and internet; CI never runs it (pytest's testpaths is tests/ only).
#
# Environment:
#   E2E_MODES       modes to run, each on a fresh cluster (default "standard knative")
#   E2E_KEEP        "true" keeps the cluster after the run for debugging (default: deleted)
#   E2E_BUILD_CUDA  "true" also builds the CUDA predictor image (~3 GB); otherwise the GPU test runs the CPU image,
#                   which is enough to check scheduling (kind has no GPU)
#   TOOLS_CACHE     where `make envtest-assets` built kubectl and helm (default ${XDG_CACHE_HOME:-~/.cache}/tickserve)
#   PYTEST_ARGS     extra pytest arguments, e.g. "-k canary"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=e2e/versions.env
source "$here/versions.env"
cache=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
python="$repo/.venv/bin/python"

die() {
  echo "e2e: $*" >&2
  exit 1
}

# The pinned kubectl and helm the k8s test tier uses, if built; otherwise whatever is on PATH.
pinned_tool() {
  local name=$1 found
  found=$(find "$cache/bin" -maxdepth 1 -name "$name-v*" -type f -perm -u+x 2>/dev/null | sort -V | tail -n 1)
  if [[ -n $found ]]; then
    echo "$found"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  else
    die "$name not found: run \`make envtest-assets\` or install $name"
  fi
}

ensure_kind() {
  if command -v kind >/dev/null 2>&1 && [[ $(kind version) == "kind $KIND_VERSION "* ]]; then
    return
  fi
  local gobin="$cache/kind-$KIND_VERSION"
  if [[ ! -x $gobin/kind ]]; then
    echo "e2e: installing kind $KIND_VERSION with go install"
    GOBIN=$gobin go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
  PATH="$gobin:$PATH"
}

command -v docker >/dev/null 2>&1 || die "Docker is required"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
[[ -x $python ]] || die "no $python: run \`make install\` first"
ensure_kind
tool_bin=$(mktemp -d)
ln -s "$(pinned_tool kubectl)" "$tool_bin/kubectl"
ln -s "$(pinned_tool helm)" "$tool_bin/helm"
PATH="$tool_bin:$PATH"
export PATH

cluster=""
cleanup() {
  local status=$?
  if [[ -n $cluster && ${E2E_KEEP:-false} != true ]]; then
    kind delete cluster --name "$cluster" || true
  elif [[ -n $cluster ]]; then
    echo "e2e: kept cluster $cluster (kubectl context kind-$cluster)"
  fi
  rm -rf "$tool_bin"
  exit "$status"
}
trap cleanup EXIT

read -r -a modes <<<"${E2E_MODES:-standard knative}"
read -r -a pytest_args <<<"${PYTEST_ARGS:-}"
for mode in "${modes[@]}"; do
  case $mode in standard | knative) ;; *) die "unknown mode '$mode' in E2E_MODES (standard|knative)" ;; esac
  cluster="tickserve-e2e-$mode"
  echo "== e2e $mode: kind cluster $cluster ($KIND_NODE_IMAGE)"
  kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  kind create cluster --name "$cluster" --image "$KIND_NODE_IMAGE" --config "$here/kind-config.yaml" --wait 5m
  kubectl config use-context "kind-$cluster"
  PYTHON=$python bash "$here/install-deps.sh" "$mode"
  bash "$here/build-images.sh" "$cluster"
  (
    cd "$here"
    E2E_MODE=$mode KUBECTL=kubectl HELM=helm "$python" -m pytest "$here" --rootdir "$here" -p no:cacheprovider \
      -o addopts="" -o testpaths="" --timeout 3600 -v "${pytest_args[@]}"
  )
  if [[ ${E2E_KEEP:-false} != true ]]; then
    kind delete cluster --name "$cluster"
    cluster=""
  fi
done
echo "== e2e passed: ${modes[*]}"

#!/usr/bin/env bash
# Build, once, the binaries the k8s test tier runs (etcd, kube-apiserver, kubectl, helm, kubeconform) and
# download the pinned CRD modules, so that a fresh machine needs nothing but Go and this repository.
#
# Usage: bash hack/envtest-assets.sh [CACHE_DIR]    (make envtest-assets; CACHE_DIR defaults to
#        ${XDG_CACHE_HOME:-$HOME/.cache}/tickserve)
#
# Versions are pinned in hack/tools/go.mod; binaries land in CACHE_DIR/bin/<tool>-<version>, so the script is a
# no-op once they exist and a version bump builds only what changed. Building kube-apiserver from source takes
# minutes; later runs take about a second. When KUBEBUILDER_ASSETS names a directory that holds etcd and
# kube-apiserver (as controller-runtime's setup-envtest produces), those are used and only the rest is built.
# The script also fills CACHE_DIR/k8s/<version>-<os>-<arch>/ with links in the KUBEBUILDER_ASSETS layout.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_module="$repo/hack/tools"
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
bin="$cache/bin"

if ! command -v go >/dev/null 2>&1; then
  [[ -x /usr/local/go/bin/go ]] || { echo "envtest-assets: Go is required (https://go.dev/dl/)" >&2; exit 1; }
  PATH="/usr/local/go/bin:$PATH"
fi
# The tools module's go.sum is authoritative; never let a local GOFLAGS=-mod=mod rewrite it.
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0

mkdir -p "$bin"
# Two test sessions (or engineers) may run this at once; the second waits and then finds everything built.
exec 9>"$cache/.envtest-assets.lock"
flock 9

# tool name | Go package | module whose version names the binary
tools=(
  "etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3"
  "kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes"
  "kubectl|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes"
  "helm|helm.sh/helm/v3/cmd/helm|helm.sh/helm/v3"
  "kubeconform|github.com/yannh/kubeconform/cmd/kubeconform|github.com/yannh/kubeconform"
)

declare -A version
while read -r path ver; do version[$path]=$ver; done < <(
  cd "$tools_module" &&
    go list -m -f '{{.Path}} {{.Version}}' k8s.io/kubernetes go.etcd.io/etcd/server/v3 helm.sh/helm/v3 \
      github.com/yannh/kubeconform
)
k8s_version=${version[k8s.io/kubernetes]}
k8s_major_minor=${k8s_version#v}
k8s_major=${k8s_major_minor%%.*}
k8s_minor=${k8s_major_minor#*.}
k8s_minor=${k8s_minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# Release builds stamp their version with -X; without it kube-apiserver reports v0.0.0-master and helm assumes a
# Kubernetes 1.20 cluster for `helm template` and `helm lint`.
ldflags_for() {
  local tool=$1 ver=$2 flags="-s -w"
  case $tool in
    kube-apiserver | kubectl)
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
      done
      ;;
    helm)
      flags+=" -X helm.sh/helm/v3/internal/version.version=$ver"
      for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        flags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
      done
      ;;
    kubeconform) flags+=" -X main.version=$ver" ;;
  esac
  echo "$flags"
}

assets=${KUBEBUILDER_ASSETS:-}
if [[ -n $assets && -x $assets/etcd && -x $assets/kube-apiserver ]]; then
  echo "envtest-assets: using etcd and kube-apiserver from KUBEBUILDER_ASSETS=$assets"
else
  assets=""
fi

envtest_dir="$cache/k8s/${k8s_version#v}-$(go env GOOS)-$(go env GOARCH)"
mkdir -p "$envtest_dir"
for entry in "${tools[@]}"; do
  IFS='|' read -r tool package module <<<"$entry"
  ver=${version[$module]}
  target="$bin/$tool-$ver"
  if [[ -n $assets && -x $assets/$tool ]]; then
    continue
  fi
  if [[ -x $target ]]; then
    echo "envtest-assets: $tool $ver already built ($target)"
  else
    echo "envtest-assets: building $tool $ver from $package (go $(go env GOVERSION)) ..."
    start=$SECONDS
    (cd "$tools_module" && go build -trimpath -ldflags "$(ldflags_for "$tool" "$ver")" -o "$target.partial" "$package")
    mv "$target.partial" "$target"
    echo "envtest-assets: built $tool $ver in $((SECONDS - start))s"
  fi
  case $tool in etcd | kube-apiserver | kubectl) ln -sfn "$target" "$envtest_dir/$tool" ;; esac
done

echo "envtest-assets: CRD modules in the Go module cache: $(bash "$repo/hack/crds.sh" | cut -d' ' -f1,2 | sort -u | tr ' \n' '@ ')"
if [[ -z $assets ]]; then
  echo "envtest-assets: ready; for other envtest users: export KUBEBUILDER_ASSETS=$envtest_dir"
fi

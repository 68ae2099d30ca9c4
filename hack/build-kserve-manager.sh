#!/usr/bin/env bash
# Build, once, KServe's controller manager (cmd/manager of github.com/kserve/kserve, unchanged) for the k8s test
# tier's `kserve_controller` fixture, which runs it against the tier's kube-apiserver so InferenceServices are
# reconciled, not only admitted.
#
# Usage: bash hack/build-kserve-manager.sh [CACHE_DIR]    (make kserve-manager; `make install` runs it)
#        CACHE_DIR defaults to ${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
#
# The version is the KServe pin of hack/crds.sh, so the manager always matches the CRDs the tier installs. The
# module comes from the Go module proxy (checked against the Go checksum database); its Go sources are copied to a
# scratch directory because the module cache is read-only, built with CGO_ENABLED=0 (about 2.5 minutes on 2 cores),
# and only the binary is kept: CACHE_DIR/bin/kserve-manager-<version>. A no-op once it exists. The Go build cache is
# cleaned afterwards, as it grows by gigabytes.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}}
module=github.com/kserve/kserve
version=$(grep -o "\"$module@v[^|]*|" "$repo/hack/crds.sh" | head -n1 | sed 's/^".*@\(.*\)|$/\1/')
[[ -n $version ]] || { echo "build-kserve-manager: no $module pin in hack/crds.sh" >&2; exit 1; }
target="$cache/bin/kserve-manager-$version"

if [[ -x $target ]]; then
  echo "build-kserve-manager: kserve-manager $version already built ($target)"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  [[ -x /usr/local/go/bin/go ]] || { echo "build-kserve-manager: Go is required (https://go.dev/dl/)" >&2; exit 1; }
  PATH="/usr/local/go/bin:$PATH"
fi

mkdir -p "$cache/bin"
# Two sessions may run this at once; the second waits, then finds the binary.
exec 9>"$cache/.kserve-manager.lock"
flock 9
if [[ -x $target ]]; then
  echo "build-kserve-manager: kserve-manager $version already built ($target)"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kserve-manager.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# Outside any module, so the repository's own go.mod files play no part.
dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $dir/go.mod && -d $dir/cmd/manager ]] || { echo "build-kserve-manager: $module@$version has no cmd/manager" >&2; exit 1; }

# Only what the Go build reads: the module's other 400 MB are install manifests, docs and Python.
mkdir -p "$work/src"
cp -R "$dir/go.mod" "$dir/go.sum" "$dir/cmd" "$dir/pkg" "$work/src/"
chmod -R u+w "$work/src"

echo "build-kserve-manager: building $module/cmd/manager $version (go $(go env GOVERSION)) ..."
start=$SECONDS
(
  cd "$work/src"
  CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -trimpath -ldflags "-s -w" -o "$target.partial" ./cmd/manager
)
mv "$target.partial" "$target"
echo "build-kserve-manager: built kserve-manager $version in $((SECONDS - start))s ($target)"
go clean -cache

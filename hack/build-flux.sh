#!/usr/bin/env bash
# Build, once, the two Flux controllers the k8s tier's GitOps loop test runs (tests/k8s/flux.py):
# source-controller (pulls the Gitea repository) and kustomize-controller (applies ./manifests/<set>).
#
# Usage: bash hack/build-flux.sh [CACHE_DIR]    (make flux; `make install` runs it)
#        CACHE_DIR defaults to ${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
#
# Flux v1.9.6 is the newest release that builds here: v1.10 needs Go 1.27 and modules the proxy does not serve.
# Two fixes make v1.9.6 build from the module zips, with no change to Flux's code:
#   - each module's go.mod says `replace .../api => ./api`, a nested module that the zip leaves out, so the
#     matching `github.com/fluxcd/<controller>/api@v1.9.6` is downloaded into ./api;
#   - source-controller asks for github.com/fluxcd/pkg/artifact v0.18.3, which the proxy does not serve; v0.18.0
#     (same API) is pinned with `go mod edit -replace`.
# Kept, and nothing else (the Go build cache is private to the build and removed: it grows by gigabytes):
#   CACHE_DIR/flux-<version>/{source-controller,kustomize-controller}   the binaries
#   CACHE_DIR/flux-<version>/crds/*.yaml                                 each module's config/crd/bases
# About 5 minutes on 2 cores. A no-op once both binaries exist.
set -euo pipefail

FLUX_VERSION=v1.9.6
cache=${1:-${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}}
dest="$cache/flux-$FLUX_VERSION"

if [[ -x $dest/source-controller && -x $dest/kustomize-controller && -d $dest/crds ]]; then
  echo "build-flux: flux controllers $FLUX_VERSION already built ($dest)"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  [[ -x /usr/local/go/bin/go ]] || { echo "build-flux: Go is required (https://go.dev/dl/)" >&2; exit 1; }
  PATH="/usr/local/go/bin:$PATH"
fi

mkdir -p "$cache"
exec 9>"$cache/.build-flux.lock"
flock 9
if [[ -x $dest/source-controller && -x $dest/kustomize-controller && -d $dest/crds ]]; then
  echo "build-flux: flux controllers $FLUX_VERSION already built ($dest)"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/flux-build.XXXXXX")
gocache="$work/gocache"
trap 'GOCACHE="$gocache" go clean -cache 2>/dev/null || true; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work" "$dest.partial"' EXIT

# The module's directory in the read-only module cache, downloaded outside any module.
module_dir() {
  (cd "$work" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
}

rm -rf "$dest.partial"
mkdir -p "$dest.partial/crds"
start=$SECONDS
for controller in source-controller kustomize-controller; do
  module=github.com/fluxcd/$controller
  echo "build-flux: downloading $module@$FLUX_VERSION ..."
  dir=$(module_dir "$module@$FLUX_VERSION")
  api=$(module_dir "$module/api@$FLUX_VERSION")
  [[ -f $dir/go.mod && -f $api/go.mod ]] || { echo "build-flux: could not download $module@$FLUX_VERSION" >&2; exit 1; }
  src="$work/$controller"
  cp -R "$dir" "$src"
  rm -rf "$src/api"
  cp -R "$api" "$src/api"
  chmod -R u+w "$src"
  if [[ $controller == source-controller ]]; then
    (cd "$src" && go mod edit -replace github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.0)
  fi
  echo "build-flux: building $controller $FLUX_VERSION (go $(go env GOVERSION)) ..."
  (cd "$src" && CGO_ENABLED=0 GOCACHE="$gocache" GOFLAGS="-mod=mod -buildvcs=false" \
    go build -trimpath -ldflags "-s -w" -o "$dest.partial/$controller" .)
  cp "$src"/config/crd/bases/*.yaml "$dest.partial/crds/"
done
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "build-flux: built flux controllers $FLUX_VERSION in $((SECONDS - start))s -> $dest"

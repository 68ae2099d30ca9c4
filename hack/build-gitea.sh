#!/usr/bin/env bash
# Build, once, the Gitea forge the registry-sync tests open pull requests against (tests/forge_servers.py).
#
# Usage: bash hack/build-gitea.sh [CACHE_DIR]    (part of `make install`; CACHE_DIR defaults to
#        ${XDG_CACHE_HOME:-$HOME/.cache}/tickserve)
#
# Gitea is built from its Go module like the control-plane binaries: `go mod download` the pinned version, copy
# the read-only module source to a writable directory, `CGO_ENABLED=1 go build -tags 'sqlite sqlite_unlock_notify'`
# (about 5 minutes on 2 cores). Only what a headless server needs is kept:
#   CACHE_DIR/gitea-<version>/gitea                       the binary (also linked as CACHE_DIR/bin/gitea-<version>)
#   CACHE_DIR/gitea-<version>/{templates,options,public}  what app.ini's STATIC_ROOT_PATH points at
# The web UI's JavaScript bundle is not built (that needs npm); the API and git over HTTP, which the tests use,
# do not need it. The script is a no-op once the binary exists. The build uses a private GOCACHE that is cleaned
# (`go clean -cache`) and removed afterwards: Gitea's build cache is several GB.
set -euo pipefail

GITEA_VERSION=v1.26.0
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tickserve}
dest="$cache/gitea-$GITEA_VERSION"
link="$cache/bin/gitea-$GITEA_VERSION"

if ! command -v go >/dev/null 2>&1; then
  [[ -x /usr/local/go/bin/go ]] || { echo "build-gitea: Go is required (https://go.dev/dl/)" >&2; exit 1; }
  PATH="/usr/local/go/bin:$PATH"
fi
command -v gcc >/dev/null 2>&1 || { echo "build-gitea: gcc is required (CGO_ENABLED=1 for sqlite)" >&2; exit 1; }

mkdir -p "$cache/bin"
exec 9>"$cache/.build-gitea.lock"
flock 9

if [[ -x $dest/gitea ]]; then
  ln -sfn "$dest/gitea" "$link"
  echo "build-gitea: gitea $GITEA_VERSION already built ($dest/gitea)"
  exit 0
fi

echo "build-gitea: downloading code.gitea.io/gitea@$GITEA_VERSION ..."
module_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $module_dir ]] || { echo "build-gitea: go mod download gave no source directory" >&2; exit 1; }

src="$cache/gitea-$GITEA_VERSION.src"
# A build cache of its own: other builds on this machine may `go clean -cache` the shared one mid-build, and this
# one (several GB) is dropped right after.
gocache="$cache/gitea-$GITEA_VERSION.gocache"
rm -rf "$src" "$dest.partial"
cp -r "$module_dir" "$src"
chmod -R u+w "$src"
trap 'GOCACHE="$gocache" go clean -cache 2>/dev/null || true; rm -rf "$src" "$dest.partial" "$gocache"' EXIT

echo "build-gitea: building gitea $GITEA_VERSION (go $(go env GOVERSION), about 5 minutes) ..."
start=$SECONDS
(
  cd "$src" &&
    CGO_ENABLED=1 GOCACHE="$gocache" GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
      -tags 'sqlite sqlite_unlock_notify' \
      -ldflags "-s -w -X main.Version=${GITEA_VERSION#v} -X main.Tags=sqlite,sqlite_unlock_notify" \
      -o gitea .
)
mkdir -p "$dest.partial"
mv "$src/gitea" "$dest.partial/gitea"
for dir in templates options public; do
  if [[ -d $src/$dir ]]; then cp -r "$src/$dir" "$dest.partial/$dir"; fi
done
mv "$dest.partial" "$dest"
ln -sfn "$dest/gitea" "$link"
echo "build-gitea: built gitea $GITEA_VERSION in $((SECONDS - start))s -> $dest"

#!/usr/bin/env bash
# Build the tickserve images from images/Dockerfile and load them into the kind cluster.
# Names live under kind.local/ so Knative never tries to resolve their tags against a registry.
#
# Usage: bash e2e/build-images.sh CLUSTER_NAME     (E2E_BUILD_CUDA=true also builds the ~3 GB CUDA predictor)
set -euo pipefail

cluster=${1:?usage: build-images.sh CLUSTER_NAME}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tag=${E2E_IMAGE_TAG:-e2e}

targets=(predictor transformer)
if [[ ${E2E_BUILD_CUDA:-false} == true ]]; then
  targets+=(predictor-cuda)
fi
for target in "${targets[@]}"; do
  image="kind.local/tickserve-$target:$tag"
  echo "== docker build --target $target -> $image"
  docker build --file "$repo/images/Dockerfile" --target "$target" --tag "$image" "$repo"
  kind load docker-image "$image" --name "$cluster"
done

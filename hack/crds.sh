#!/usr/bin/env bash
# Print the CustomResourceDefinition files of the pinned KServe and prometheus-operator releases, fetched from the
# Go module proxy into the module cache (`go mod download`, checked against the Go checksum database), so the CRDs
# are never copied into this repository. Output: one line per file, "<module> <version> <absolute path>".
# The k8s test tier (tests/k8s/conftest.py) installs exactly these files into its kube-apiserver.
#
# KServe: the Python SDK in pyproject.toml is kserve 0.21.0, but v0.20.0 is the newest release the module proxy
# serves (v0.21.0 answers 403), and the InferenceService schema fields tickserve uses are the same in both.
set -euo pipefail

# module@version | directory inside the module holding the CRD YAML files | files to take (empty: every CRD there)
# From prometheus-operator only the kinds an application ships: the Prometheus, Alertmanager, ThanosRuler,
# PrometheusAgent and ScrapeConfig CRDs are 0.3-0.8 MB schemas each, tickserve creates none of them, and
# establishing them would add about 10 s to every test session. AlertmanagerConfig (0.7 MB) is the exception: the
# chart ships one (monitoring.alertmanagerConfig) to route rollback alerts.
#
# ClusterStorageContainer lives in its own subfolder of KServe's config/crd/full. KServe's controller needs it: without
# it every reconcile of a predictor with STORAGE_URI fails ("StorageURI not supported: ... no matches for kind
# ClusterStorageContainer"), so a KServe install must include it.
pins=(
  "github.com/kserve/kserve@v0.20.0|config/crd/full|"
  "github.com/kserve/kserve@v0.20.0|config/crd/full/clusterstoragecontainer|"
  "github.com/prometheus-operator/prometheus-operator@v0.85.0|example/prometheus-operator-crd|monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_probes.yaml monitoring.coreos.com_alertmanagerconfigs.yaml"
)

if ! command -v go >/dev/null 2>&1; then
  [[ -x /usr/local/go/bin/go ]] || { echo "crds.sh: Go is required (https://go.dev/dl/)" >&2; exit 1; }
  PATH="/usr/local/go/bin:$PATH"
fi
# Outside any module, so the repository's own go.mod files play no part.
cd "${TMPDIR:-/tmp}"
export GOFLAGS=-mod=mod

for pin in "${pins[@]}"; do
  IFS='|' read -r module_at_version crd_dir wanted <<<"$pin"
  module=${module_at_version%@*}
  version=${module_at_version#*@}
  dir=$(go mod download -json "$module_at_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d $dir/$crd_dir ]] || { echo "crds.sh: $module_at_version has no $crd_dir" >&2; exit 1; }
  found=0
  for file in "$dir/$crd_dir"/*.yaml; do
    # Only CRDs: these folders also hold kustomization files.
    grep -q '^kind: CustomResourceDefinition' "$file" || continue
    [[ -z $wanted || " $wanted " == *" $(basename "$file") "* ]] || continue
    echo "$module $version $file"
    found=$((found + 1))
  done
  read -ra wanted_files <<<"$wanted"
  if ((found == 0 || (${#wanted_files[@]} > 0 && found != ${#wanted_files[@]}))); then
    echo "crds.sh: $module_at_version/$crd_dir has $found of the CRD files wanted (${wanted:-any})" >&2
    exit 1
  fi
done

#!/usr/bin/env bash
# Install, at pinned versions, what tickserve needs on the kind cluster of the current kubectl context:
# cert-manager, the networking layer of the KServe mode under test, KServe itself and the Prometheus operator
# with one Prometheus that selects every PodMonitor.
#
# Usage: bash e2e/install-deps.sh standard|knative
#   standard: Gateway API CRDs + Envoy Gateway, KServe in Standard mode with Gateway API ingress.
#   knative:  Knative Serving (operator) with Kourier and the pod-spec feature flags GPU scheduling needs,
#             KServe in Knative mode without Istio virtual hosts.
set -euo pipefail

mode=${1:?usage: install-deps.sh standard|knative}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/versions.env
source "$here/versions.env"
PYTHON=${PYTHON:-$here/../.venv/bin/python}

log() { printf '\n== %s\n' "$*"; }

wait_rollout() {
  local namespace=$1
  kubectl wait --namespace "$namespace" --for=condition=Available deployment --all --timeout=600s
}

install_cert_manager() {
  log "cert-manager $CERT_MANAGER_VERSION"
  helm upgrade --install cert-manager cert-manager \
    --repo https://charts.jetstack.io --version "$CERT_MANAGER_VERSION" \
    --namespace cert-manager --create-namespace --set crds.enabled=true --wait --timeout 10m
}

install_gateway() {
  log "Gateway API $GATEWAY_API_VERSION, Envoy Gateway $ENVOY_GATEWAY_VERSION"
  kubectl apply --server-side \
    -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"
  # Envoy Gateway's own CRDs only: the Gateway API ones above are the pinned release.
  helm show crds oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" |
    "$PYTHON" "$here/select_crds.py" gateway.envoyproxy.io |
    kubectl apply --server-side --force-conflicts -f -
  helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
    --namespace envoy-gateway-system --create-namespace --skip-crds --wait --timeout 10m
  kubectl apply -f - <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: envoy
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
---
apiVersion: v1
kind: Namespace
metadata:
  name: kserve
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: kserve-ingress-gateway
  namespace: kserve
spec:
  gatewayClassName: envoy
  listeners:
    - name: http
      protocol: HTTP
      port: 80
      allowedRoutes:
        namespaces:
          from: All
  infrastructure:
    labels:
      serving.kserve.io/gateway: kserve-ingress-gateway
YAML
  kubectl wait --namespace kserve --for=condition=Programmed gateway/kserve-ingress-gateway --timeout=300s
}

install_knative() {
  log "Knative operator $KNATIVE_OPERATOR_VERSION, Knative Serving $KNATIVE_SERVING_VERSION with Kourier"
  helm upgrade --install knative-operator \
    "https://github.com/knative/operator/releases/download/knative-$KNATIVE_OPERATOR_VERSION/knative-operator-$KNATIVE_OPERATOR_VERSION.tgz" \
    --namespace knative-operator --create-namespace --wait --timeout 10m
  kubectl create namespace knative-serving --dry-run=client -o yaml | kubectl apply -f -
  # The feature flags are the ones tickserve's GPU value set needs in Knative mode (README): node selectors and
  # tolerations in the pod spec; emptyDir for the read-only root filesystem's /tmp.
  kubectl apply -f - <<YAML
apiVersion: operator.knative.dev/v1beta1
kind: KnativeServing
metadata:
  name: knative-serving
  namespace: knative-serving
spec:
  version: "$KNATIVE_SERVING_VERSION"
  ingress:
    kourier:
      enabled: true
  config:
    network:
      ingress-class: kourier.ingress.networking.knative.dev
    domain:
      example.com: ""
    features:
      kubernetes.podspec-nodeselector: enabled
      kubernetes.podspec-tolerations: enabled
      kubernetes.podspec-affinity: enabled
      kubernetes.podspec-volumes-emptydir: enabled
    deployment:
      # Images loaded with \`kind load\` live under kind.local; never resolve their tags against a registry.
      registries-skipping-tag-resolving: kind.local,ko.local,dev.local
YAML
  kubectl wait --namespace knative-serving --for=condition=Ready knativeserving/knative-serving --timeout=600s
}

install_kserve() {
  local deployment_mode=$1
  shift
  log "KServe $KSERVE_VERSION ($deployment_mode mode)"
  helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version "$KSERVE_VERSION" \
    --namespace kserve --create-namespace --wait --timeout 10m
  helm upgrade --install kserve-resources oci://ghcr.io/kserve/charts/kserve-resources --version "$KSERVE_VERSION" \
    --namespace kserve --create-namespace --wait --timeout 10m \
    --set kserve.version="$KSERVE_VERSION" \
    --set kserve.controller.deploymentMode="$deployment_mode" \
    "$@"
  wait_rollout kserve
}

install_prometheus() {
  log "Prometheus operator $PROMETHEUS_OPERATOR_VERSION and a Prometheus selecting every PodMonitor"
  kubectl apply --server-side --force-conflicts -f \
    "https://github.com/prometheus-operator/prometheus-operator/releases/download/$PROMETHEUS_OPERATOR_VERSION/bundle.yaml"
  wait_rollout default
  kubectl apply --server-side -f "$here/prometheus.yaml"
  kubectl wait --namespace monitoring --for=condition=Available prometheus/tickserve-e2e --timeout=600s
}

advertise_fake_gpu() {
  # No device plugin in kind: advertise one nvidia.com/gpu on the GPU-labelled node (Kubernetes' documented way
  # of advertising extended resources) so that scheduling, the part tickserve configures, can be checked.
  local node
  for node in $(kubectl get nodes -l nvidia.com/gpu.present=true -o name); do
    kubectl patch "$node" --subresource=status --type=json \
      -p '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "1"}]'
  done
}

install_cert_manager
case $mode in
  standard)
    install_gateway
    install_kserve Standard \
      --set kserve.controller.gateway.ingressGateway.enableGatewayApi=true \
      --set kserve.controller.gateway.ingressGateway.className=envoy \
      --set kserve.controller.gateway.ingressGateway.kserveGateway=kserve/kserve-ingress-gateway
    ;;
  knative)
    install_knative
    install_kserve Knative --set kserve.controller.gateway.disableIstioVirtualHost=true
    ;;
  *)
    echo "install-deps.sh: unknown mode '$mode' (standard|knative)" >&2
    exit 2
    ;;
esac
install_prometheus
advertise_fake_gpu
log "dependencies ready for $mode mode"

#!/usr/bin/env bash
# Placeholder until the k8s tier lands: honours KUBEBUILDER_ASSETS, otherwise says nothing is built yet.
echo "envtest-assets: not built yet"

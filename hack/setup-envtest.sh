#!/usr/bin/env bash
# Builds the envtest binaries (kube-apiserver, etcd, kubectl) from the Go module proxy,
# because no prebuilt binaries can be downloaded on our machines. They are cached outside
# the clone so that a fresh clone (CI) on the same machine reuses them. The last line
# printed is the directory that holds them, ready for KUBEBUILDER_ASSETS.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
STAGING_VERSION="${STAGING_VERSION:-0.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/outrigger/envtest"
dest="$cache_root/$K8S_VERSION"
mkdir -p "$dest"

# Each binary must run and report the version we build, so a stale or broken cache is rebuilt.
# The output is captured before it is searched: with pipefail, `cmd | grep -q` fails
# whenever grep exits before cmd has written everything (SIGPIPE), which used to throw
# away a good cache now and then.
have() {
  [ -x "$dest/$1" ] || return 1
  local out
  case "$1" in
    kubectl) out="$("$dest/kubectl" version --client 2>/dev/null)" && [[ "$out" == *"v$K8S_VERSION"* ]] ;;
    kube-apiserver) out="$("$dest/kube-apiserver" --version 2>/dev/null)" && [[ "$out" == *"v$K8S_VERSION"* ]] ;;
    etcd) out="$("$dest/etcd" --version 2>/dev/null)" && [[ "$out" == *"$ETCD_VERSION"* ]] ;;
  esac
}
log() { echo "setup-envtest: $*" >&2; }

# Serialise concurrent runs (make test and make demo started together) on one lock.
exec 9>"$cache_root/.lock"
flock 9

build_kube() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  log "building kube-apiserver and kubectl v$K8S_VERSION (first time only, a few minutes)"
  (
    cd "$work"
    go mod init outrigger-envtest-kube >/dev/null 2>&1
    modfile="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    # k8s.io/kubernetes points its staging modules at ./staging/...; the same modules
    # are published at v0.x, so we pin every one of them to that version.
    grep -E '=> \./staging/' "$modfile" | awk '{print $1}' | while read -r mod; do
      go mod edit -replace="$mod=$mod@v$STAGING_VERSION"
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    # Without these the binaries report v0.0.0-master, which clients that check the
    # server version (kubectl, OLM's minKubeVersion) reject.
    local_minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    ldflags="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$local_minor -X k8s.io/component-base/version.gitTreeState=clean"
    ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$local_minor"
    GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$dest/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$dest/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
  )
  mv "$dest/kube-apiserver.tmp" "$dest/kube-apiserver"
  mv "$dest/kubectl.tmp" "$dest/kubectl"
}

build_etcd() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  log "building etcd v$ETCD_VERSION (first time only)"
  (
    cd "$work"
    go mod init outrigger-envtest-etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod go build -o "$dest/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$dest/etcd.tmp" "$dest/etcd"
}

if ! have kube-apiserver || ! have kubectl; then build_kube; fi
if ! have etcd; then build_etcd; fi

echo "$dest"

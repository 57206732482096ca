# Shared by hack/kind-node/* and hack/kind-cluster, on top of hack/lib.sh: what the node
# image carries, its cache paths, Go-built tools. Source it; it defines variables and
# functions and runs nothing.
# shellcheck shell=bash

shopt -s inherit_errexit
KIND_NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib.sh
source "${KIND_NODE_DIR}/../lib.sh"

# Versions of what the node image carries beyond hack/versions.env. CoreDNS, etcd and pause
# are those `kubeadm config images list` names (v1.37.2: CoreDNS v1.14.6, etcd 3.7.0-0,
# pause 3.10.2; kind's containerd config also names pause 3.10). crictl follows the
# Kubernetes minor.
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

TOOLS_DIR="${CACHE_ROOT}/tools"
# shellcheck disable=SC2034 # used by the scripts that source this file
ROOTS_DIR="${CACHE_ROOT}/kind-node/roots"

# Local base images (no registry is reachable, so every FROM names one of these).
# shellcheck disable=SC2034 # used by the scripts that source this file
DEBIAN_BASE_IMAGE="certsmith/debian:${DEBIAN_SUITE}"
# shellcheck disable=SC2034 # used by the scripts that source this file
PYTHON_BASE_IMAGE="certsmith/python:3.11-slim-local"

# The label of every image built here: the hash of its inputs, so an image is rebuilt only
# when they change, and an image without it is not ours.
HASH_LABEL="dev.certsmith.inputs"

# image_hash IMAGE: its HASH_LABEL, empty for an image not built here (or no image).
image_hash() { docker image inspect --format "{{index .Config.Labels \"${HASH_LABEL}\"}}" "$1" 2>/dev/null || true; }

# go_tool NAME PACKAGE VERSION: `go install`s PACKAGE@VERSION (static) into
# ${TOOLS_DIR}/NAME-VERSION once, prints the binary's path.
go_tool() {
  local name="$1" package="$2" version="$3"
  local dir="${TOOLS_DIR}/${name}-${version}" binary
  binary="${dir}/$(basename "${package}")"
  if [[ ! -x "${binary}" ]]; then
    log "go install ${package}@${version}"
    local started=${SECONDS}
    mkdir -p "${dir}"
    CGO_ENABLED=0 GOBIN="${dir}" GOFLAGS=-trimpath go install -ldflags "-s -w" "${package}@${version}" >&2
    log "built ${name} ${version} in $((SECONDS - started))s"
  fi
  echo "${binary}"
}

kind_bin() { go_tool kind sigs.k8s.io/kind "${KIND_VERSION}"; }

# The directory of the kind module in the Go module cache (downloads it if needed).
kind_module_dir() {
  (cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}") |
    jq -r .Dir
}

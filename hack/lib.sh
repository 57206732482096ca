# Shared by every script in hack/ and .ci/ (not by files that run inside images, such as
# hack/kind-node/runc-wrapper). Source it right after `set -o errexit -o nounset -o pipefail`;
# it defines variables and functions and runs nothing.
#
# Settings (environment): CERTSMITH_CACHE  cache root (default ~/.cache/certsmith)
# shellcheck shell=bash

[[ -z "${CERTSMITH_LIB_SOURCED:-}" ]] || return 0
CERTSMITH_LIB_SOURCED=1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=hack/versions.env
source "${REPO_ROOT}/hack/versions.env"

# --- cache paths ------------------------------------------------------------------------

CACHE_ROOT="${CERTSMITH_CACHE:-${HOME}/.cache/certsmith}"
# Kubernetes and etcd as hack/build-binaries builds them, keyed by their versions.
KUBE_CACHE_DIR="${CACHE_ROOT}/k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}"
KUBE_BIN_DIR="${KUBE_CACHE_DIR}/bin"
# The log and pid file of a dockerd that hack/docker-up started (there is no systemd here).
DOCKER_STATE_DIR="${CACHE_ROOT}/state/docker"

# --- logging ----------------------------------------------------------------------------

# The running script's path, without hack/: the prefix of its log lines.
SCRIPT_NAME="$(cd "$(dirname "${BASH_SOURCE[-1]}")" && pwd -P)/$(basename "${BASH_SOURCE[-1]}")"
SCRIPT_NAME="${SCRIPT_NAME#"${REPO_ROOT}/"}"
SCRIPT_NAME="${SCRIPT_NAME#hack/}"

# log MESSAGE...: one line on stderr (stdout is for what a script prints as its result).
log() { echo "${SCRIPT_NAME}: $*" >&2; }

die() {
  log "$*"
  exit 1
}

# log_tail FILE: logs the last lines of FILE, where a failed process said why.
log_tail() {
  log "last lines of $1:"
  tail -n 25 "$1" >&2 || true
}

# step NAME COMMAND...: runs COMMAND between two `::: NAME` lines, the second with its time.
step() {
  local name="$1" started=${SECONDS}
  shift
  echo "::: ${name}" >&2
  "$@"
  echo "::: ${name} took $((SECONDS - started))s" >&2
}

# --- waiting and cleaning up ------------------------------------------------------------

# Seconds between two tries of wait_until; a script may set its own.
WAIT_INTERVAL=1

# wait_until TIMEOUT_SECONDS DESCRIPTION COMMAND...: runs COMMAND (its stdout discarded)
# every WAIT_INTERVAL seconds until it succeeds. Returns 1 after logging "timed out after
# TIMEOUT_SECONDSs waiting for DESCRIPTION" if it has not succeeded by then. COMMAND runs
# as a condition (errexit does not apply inside it); it may `exit` to give up at once.
wait_until() {
  local timeout="$1" description="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for ${description}"
      return 1
    fi
    sleep "${WAIT_INTERVAL}"
  done
}

# on_exit FUNCTION: runs `FUNCTION EXIT_STATUS` once when the script ends, whether it
# finishes, fails or gets SIGINT/SIGTERM; the exit status stays the script's. FUNCTION
# cleans up (it may find half of what it undoes), so its own failures are ignored.
on_exit() {
  EXIT_HANDLER="$1"
  trap run_exit_handler EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

CLEANED_UP=0
run_exit_handler() {
  local status=$?
  ((CLEANED_UP == 0)) || return 0
  CLEANED_UP=1
  "${EXIT_HANDLER}" "${status}" || true
}

# --- Kubernetes binaries ----------------------------------------------------------------

# What the integration tier runs on every supported version: the apiserver profile
# (hack/cluster) and the tests' kubectl. The kind tier needs every component.
# shellcheck disable=SC2034 # read by the scripts that source this file
INTEGRATION_COMPONENTS=(etcd kube-apiserver kube-controller-manager kubectl)

# build_kube_binaries [COMPONENT...]: builds what is missing of them (default: all of
# Kubernetes and etcd) into KUBE_BIN_DIR (hack/build-binaries).
build_kube_binaries() { "${REPO_ROOT}/hack/build-binaries" "$@" >/dev/null; }

# kubectl ARGS...: the project's own kubectl, never the one on PATH.
kubectl() {
  [[ -x "${KUBE_BIN_DIR}/kubectl" ]] || build_kube_binaries kubectl
  "${KUBE_BIN_DIR}/kubectl" "$@"
}

# condition_true TYPE KUBECTL_GET_ARGS...: the object's condition TYPE has status True.
# (`kubectl wait` fails instead of waiting while an object has no conditions yet.)
condition_true() {
  local type="$1"
  shift
  [[ "$(kubectl get "$@" -o jsonpath="{.status.conditions[?(@.type==\"${type}\")].status}" \
    2>/dev/null)" == True ]]
}

# pod_certificate_gates: the feature gates that serve and use pod certificates
# (PodCertificateRequest, ClusterTrustBundle and its projection) on KUBERNETES_VERSION, as
# one comma-separated list; empty from 1.37, where they are GA and on by default. They are
# beta and off in 1.35 and 1.36: kube-apiserver, kube-controller-manager and the kubelet
# need them (kube-apiserver also needs pod_certificate_runtime_config).
pod_certificate_gates() {
  local minor
  minor="$(echo "${KUBERNETES_VERSION}" | cut -d. -f2)"
  ((minor < 37)) || return 0
  echo "PodCertificateRequest=true,ClusterTrustBundle=true,ClusterTrustBundleProjection=true"
}

# pod_certificate_runtime_config: kube-apiserver's --runtime-config entries that serve the
# beta pod-certificate APIs on KUBERNETES_VERSION; empty from 1.37 (certificates.k8s.io/v1).
pod_certificate_runtime_config() {
  [[ -n "$(pod_certificate_gates)" ]] || return 0
  echo "certificates.k8s.io/v1beta1/podcertificaterequests=true,certificates.k8s.io/v1beta1/clustertrustbundles=true"
}

# go_build_etcd VERSION MODULE_DIR OUTPUT: builds etcd's server at VERSION into OUTPUT from
# a module of our own in MODULE_DIR (its replace directives make `go install @VERSION`
# refuse it).
go_build_etcd() {
  local version="$1" module_dir="$2" output="$3"
  mkdir -p "${module_dir}"
  (cd "${module_dir}" &&
    { [[ -f go.mod ]] || go mod init certsmith.dev/etcdbuild >/dev/null 2>&1; } &&
    go get "go.etcd.io/etcd/server/v3@${version}" >&2 &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${output}.tmp" go.etcd.io/etcd/server/v3)
  mv "${output}.tmp" "${output}"
}

# --- PKI (ECDSA P-256, ten years; files in the current directory) ----------------------

# new_key NAME: NAME.key.
new_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null; }

# new_ca NAME SUBJECT: NAME.key and the self-signed CA certificate NAME.crt.
new_ca() {
  new_key "$1"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 3650 -out "$1.crt" 2>/dev/null
}

# issue_cert CA NAME SUBJECT EXTENSION: NAME.key and NAME.crt signed by CA.crt/CA.key, with
# one extension line (say `extendedKeyUsage=clientAuth`).
issue_cert() {
  local ca="$1" name="$2" subject="$3" extension="$4"
  new_key "${name}"
  openssl req -new -key "${name}.key" -subj "${subject}" -out "${name}.csr" 2>/dev/null
  openssl x509 -req -in "${name}.csr" -CA "${ca}.crt" -CAkey "${ca}.key" -CAcreateserial \
    -days 3650 -extfile <(echo "${extension}") -out "${name}.crt" 2>/dev/null
  rm -f "${name}.csr"
}

# --- the dockerd hack/docker-up started --------------------------------------------------

# Prints its pid if it is still running.
our_dockerd_pid() {
  local pid
  pid="$(cat "${DOCKER_STATE_DIR}/dockerd.pid" 2>/dev/null)" || return 1
  [[ -n "${pid}" && "$(cat "/proc/${pid}/comm" 2>/dev/null)" == dockerd ]] || return 1
  echo "${pid}"
}

# Stops it if it runs; fails if it is still there 60 s after SIGTERM.
stop_our_dockerd() {
  local pid
  if ! pid="$(our_dockerd_pid)"; then
    log "no dockerd started by hack/docker-up is running"
    rm -f "${DOCKER_STATE_DIR}/dockerd.pid"
    return 0
  fi
  log "stopping dockerd ${pid}"
  kill -TERM "${pid}"
  wait_until 60 "dockerd ${pid} to exit" test ! -e "/proc/${pid}" || return 1
  rm -f "${DOCKER_STATE_DIR}/dockerd.pid"
}

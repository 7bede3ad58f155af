#!/usr/bin/env bash
# A real Kubernetes API server for tests: etcd and kube-apiserver on
# 127.0.0.1, no kubelet, no controller-manager, no scheduler. Tests create
# Nodes, Pods (status.podIP patched through the status subresource) and
# Services themselves.
#
#   scripts/kube-test-cluster.sh start DIR    start a cluster; prints DIR/kubeconfig last
#   scripts/kube-test-cluster.sh stop DIR     stop the processes that `start DIR` started
#   scripts/kube-test-cluster.sh restart-apiserver DIR
#                                 stop kube-apiserver only, start it again on the
#                                 same port with the same etcd
#   scripts/kube-test-cluster.sh etcd-compact DIR
#                                 compact etcd (to the revision printed on
#                                 stdout, above every resourceVersion handed
#                                 out before): a watch or list from any of them
#                                 then gets 410 Gone (how soon:
#                                 TCPX_KUBE_WATCH_CACHE below)
#   scripts/kube-test-cluster.sh build        only build the binaries (CI warm-up)
#
# What `start DIR` leaves in DIR (everything of a cluster lives there):
#   kubeconfig          https://127.0.0.1:PORT, the CA, user tcpx-admin (group
#                       system:masters) with a bearer token
#   kubeconfig-limited  the same server, user tcpx-limited: no group but
#                       system:authenticated, so RBAC refuses it until a test
#                       binds a role to the user `tcpx-limited`
#   admin-token, limited-token, ca.crt   the same, for curl
#   cluster.env         ports and settings (restart-apiserver, etcd-compact read it)
#   etcd.pid, kube-apiserver.pid, etcd.log, kube-apiserver.log, etcd/ (data),
#   apiserver.crt/.key, sa.key/.pub (service-account signing), tokens.csv
# Ports are free ports the kernel picks, so clusters can run side by side.
#
# The binaries: kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION (the etcd
# release that k8s.io/kubernetes $KUBE_VERSION's go.mod requires, so the one
# Kubernetes tests that release with), built from their Go modules by a tiny
# Go module in the cache folder, once per machine (several minutes on 2
# cores), then reused. The cache is ${TCPX_KUBE_CACHE:-/var/cache/tcp-exporter};
# Go's module and build caches stay at Go's defaults (under $HOME).
#
# Settings read from the environment:
#   TCPX_KUBE_CACHE          where the binaries are built and kept
#   TCPX_KUBE_START_TIMEOUT  seconds to wait for each component (default 120)
#   TCPX_KUBE_WATCH_CACHE    `true` (default, as in real clusters) or `false`:
#                            kube-apiserver's watch cache, for this cluster
#                            (kept across restart-apiserver).
#                            true: watches and lists are served from the cache,
#                            which does not see an etcd compaction; after
#                            restart-apiserver the new cache starts at etcd's
#                            current revision, and a watch from a resourceVersion
#                            older than that gets 410 ("too old resource
#                            version"), compacted or not (etcd-compact makes sure
#                            that every earlier resourceVersion is older).
#                            Watch bookmarks are sent.
#                            false: every watch and list reads etcd: right after
#                            etcd-compact, any watch or list from a
#                            resourceVersion handed out before it gets 410.
#                            No watch bookmarks are sent.
#                          Either way, a watch already streaming keeps streaming
#                          through a compaction (etcd cancels no watch that is
#                          caught up); restart-apiserver ends it, and a client
#                          that resumes from its last resourceVersion gets 410
#                          if etcd-compact ran since it got that version.
#
# Needs go, openssl, curl, python3 (free ports, JSON), flock. Makes no
# network connection but to the Go module proxy (first build) and 127.0.0.1.
set -euo pipefail

KUBE_VERSION=v1.34.4
# k8s.io/kubernetes v1.N.M's staging modules (k8s.io/api, ...) are v0.N.M.
STAGING_VERSION=v0.${KUBE_VERSION#v1.}
ETCD_VERSION=v3.6.4
SERVICE_CIDR=10.96.0.0/16
CACHE=${TCPX_KUBE_CACHE:-/var/cache/tcp-exporter}
BIN_DIR=$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION
KUBE_APISERVER=$BIN_DIR/kube-apiserver
ETCD=$BIN_DIR/etcd
START_TIMEOUT=${TCPX_KUBE_START_TIMEOUT:-120}
ME=kube-test-cluster

# log, die, usage, need, free_ports, alive.
# shellcheck source=scripts/test-infra.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-infra.sh"

# ------------------------------------------------------------------ build

# The tiny module: requires k8s.io/kubernetes and etcd's server module, and
# points every k8s.io staging module that k8s.io/kubernetes replaces with
# ./staging/src/... at its published v0.N.M release instead. The list of
# staging modules is read from k8s.io/kubernetes's own go.mod, so it is right
# for whatever KUBE_VERSION says.
write_build_module() {
    local src=$1 info upstream_mod
    info=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION") ||
        die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed: $info"
    upstream_mod=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])' <<<"$info")
    local staging
    staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$upstream_mod")
    [[ -n $staging ]] || die "no staging replace lines in $upstream_mod: has k8s.io/kubernetes $KUBE_VERSION changed its layout?"
    grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$upstream_mod" ||
        die "k8s.io/kubernetes $KUBE_VERSION does not require etcd $ETCD_VERSION: set ETCD_VERSION to the one its go.mod names"
    {
        echo "module tcpx.invalid/kube-test-cluster"
        echo
        # Kubernetes' own go and godebug lines, so the binary behaves as built upstream.
        sed -n -e '/^go [0-9]/p' -e '/^godebug /p' "$upstream_mod"
        echo
        echo "require ("
        echo "	k8s.io/kubernetes $KUBE_VERSION"
        echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
        echo ")"
        echo
        echo "replace ("
        local m
        for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
        echo ")"
    } >"$src/go.mod"
    cat >"$src/tools.go" <<'EOF'
//go:build tools

// Only so that `go mod tidy` records what the two binaries need.
package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
)
EOF
}

build() {
    [[ -x $KUBE_APISERVER && -x $ETCD ]] && return 0
    command -v go >/dev/null ||
        die "go not found: a Go toolchain builds kube-apiserver and etcd once into $BIN_DIR (Debian's golang is too old for Kubernetes $KUBE_VERSION)"
    need python3 flock
    if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w $CACHE ]]; then
        die "cannot write the cache folder $CACHE: run as root, or set TCPX_KUBE_CACHE to a writable folder"
    fi
    # One build at a time per machine; whoever waited finds the binaries.
    exec {lock}>"$CACHE/.kube-$KUBE_VERSION.lock"
    flock "$lock"
    if [[ -x $KUBE_APISERVER && -x $ETCD ]]; then
        exec {lock}>&-
        return 0
    fi
    local src=$BIN_DIR.build blog=$BIN_DIR.build.log started=$SECONDS
    rm -rf "$src"
    mkdir -p "$src"
    log "building kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION into $BIN_DIR (once per machine; log: $blog)"
    # Static binaries as Kubernetes builds them, without file paths or
    # symbol tables (smaller, faster to link); the version that /version
    # reports set the way Kubernetes' own build sets it.
    local minor=${KUBE_VERSION#v1.} pkg ldflags="-s -w"
    minor=${minor%%.*}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    if ! (
        cd "$src"
        export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS="${GOFLAGS:-} -buildvcs=false"
        write_build_module "$src"
        # Each step with the time it started, in the build log.
        PS4="+ \$(date +%T) "
        set -x
        go mod tidy
        go build -trimpath -ldflags "$ldflags" -o "$src/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
        # etcd's main package is its server module's root.
        go build -trimpath -ldflags "-s -w" -o "$src/etcd" go.etcd.io/etcd/server/v3
    ) >"$blog" 2>&1; then
        tail -n 30 "$blog" >&2
        die "building kube-apiserver $KUBE_VERSION / etcd $ETCD_VERSION failed (whole log: $blog)"
    fi
    "$src/kube-apiserver" --version >>"$blog" 2>&1
    "$src/etcd" --version >>"$blog" 2>&1
    rm -rf "$BIN_DIR"
    mkdir -p "$BIN_DIR"
    mv "$src/kube-apiserver" "$src/etcd" "$src/go.mod" "$src/go.sum" "$src/tools.go" "$BIN_DIR/"
    rm -rf "$src"
    log "built in $((SECONDS - started)) s"
    exec {lock}>&-
}

# ------------------------------------------------------------------ helpers


# ours DIR PIDFILE: the PID recorded in PIDFILE, if that process is alive and
# is the one started for DIR (its command line names DIR: a PID reused by
# another process since is left alone).
ours() {
    local dir=$1 file=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" || return 1
    echo "$pid"
}

# stop_one DIR NAME: TERM the process recorded in DIR/NAME.pid, wait for it to
# exit (KILL after 30 s), remove the PID file.
stop_one() {
    local dir=$1 name=$2 pid i
    if pid=$(ours "$dir" "$dir/$name.pid"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "$name (pid $pid) still running 30 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                alive "$pid" || break
                sleep 0.1
            done
            alive "$pid" && die "$name (pid $pid) does not exit even after SIGKILL"
        fi
    fi
    rm -f "$dir/$name.pid"
}

# fail_with_log LOGFILE MESSAGE: the message, the log's tail, exit 1.
fail_with_log() {
    log "$2; last lines of $1:"
    tail -n 25 "$1" | sed 's/^/    /' >&2 || true
    exit 1
}

load_env() {
    local dir=$1
    [[ -f $dir/cluster.env ]] || die "$dir/cluster.env missing: no cluster was started in $dir"
    # Our own file, written by `start`: KEY=VALUE lines.
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
}

# ------------------------------------------------------------------ etcd

start_etcd() {
    local dir=$1 pid i
    "$ETCD" \
        --name tcpx \
        --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "tcpx=http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster-state new \
        --unsafe-no-fsync \
        </dev/null >>"$dir/etcd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/etcd.pid"
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        alive "$pid" || fail_with_log "$dir/etcd.log" "etcd exited at start"
        if curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then
            return 0
        fi
        sleep 0.2
    done
    fail_with_log "$dir/etcd.log" "etcd not healthy after $START_TIMEOUT s on 127.0.0.1:$ETCD_CLIENT_PORT"
}

# etcd_post DIR PATH JSON: a call to etcd's v3 JSON gateway.
etcd_post() {
    curl -fsS --max-time 30 -X POST "http://127.0.0.1:$ETCD_CLIENT_PORT$2" -d "$3" ||
        fail_with_log "$1/etcd.log" "etcd's $2 failed"
}

# ------------------------------------------------------------------ kube-apiserver

start_apiserver() {
    local dir=$1 pid i
    "$KUBE_APISERVER" \
        --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address 127.0.0.1 \
        --advertise-address 127.0.0.1 \
        --secure-port "$API_PORT" \
        --cert-dir "$dir/apiserver-certs" \
        --tls-cert-file "$dir/apiserver.crt" \
        --tls-private-key-file "$dir/apiserver.key" \
        --client-ca-file "$dir/ca.crt" \
        --token-auth-file "$dir/tokens.csv" \
        --authorization-mode Node,RBAC \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$dir/sa.pub" \
        --service-account-signing-key-file "$dir/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --disable-admission-plugins ServiceAccount \
        --endpoint-reconciler-type none \
        --etcd-compaction-interval 0 \
        --watch-cache="$WATCH_CACHE" \
        --shutdown-send-retry-after=true \
        --profiling=false \
        </dev/null >>"$dir/kube-apiserver.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/kube-apiserver.pid"
    # --endpoint-reconciler-type none: the `kubernetes` Service's Endpoints
    # would name 127.0.0.1, which Endpoints refuse (loopback).
    # --etcd-compaction-interval 0: etcd is compacted only by etcd-compact.
    # --shutdown-send-retry-after: on SIGTERM, open watches get a GOAWAY and
    # the server exits within seconds (otherwise it waits --request-timeout,
    # 60 s, for them).
    local token
    token=$(<"$dir/admin-token")
    for ((i = 0; i < START_TIMEOUT * 4; i++)); do
        alive "$pid" || fail_with_log "$dir/kube-apiserver.log" "kube-apiserver exited at start"
        if [[ $(curl -sS --max-time 5 --cacert "$dir/ca.crt" -H "Authorization: Bearer $token" \
            "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null) == ok ]]; then
            return 0
        fi
        sleep 0.25
    done
    fail_with_log "$dir/kube-apiserver.log" \
        "kube-apiserver not ready after $START_TIMEOUT s on https://127.0.0.1:$API_PORT/readyz"
}

# ------------------------------------------------------------------ certificates, tokens

make_credentials() {
    local dir=$1
    (
        cd "$dir"
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout ca.key -out ca.crt -days 3650 -subj "/CN=tcpx-test-cluster-ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
        # 10.96.0.1: the `kubernetes` Service's address in SERVICE_CIDR.
        cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile apiserver.ext -out apiserver.crt
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
        openssl pkey -in sa.key -pubout -out sa.pub
        openssl rand -hex 24 >admin-token
        openssl rand -hex 24 >limited-token
        # token,user,uid,"groups"
        printf '%s,tcpx-admin,tcpx-admin,"system:masters"\n' "$(<admin-token)" >tokens.csv
        printf '%s,tcpx-limited,tcpx-limited\n' "$(<limited-token)" >>tokens.csv
        chmod 600 ./*.key admin-token limited-token tokens.csv
        rm -f apiserver.csr apiserver.ext ca.srl
    ) >"$dir/openssl.log" 2>&1 || fail_with_log "$dir/openssl.log" "making certificates with openssl failed"
}

# write_kubeconfig DIR FILE USER TOKENFILE
write_kubeconfig() {
    local dir=$1 file=$2 user=$3 ca
    ca=$(base64 -w0 <"$dir/ca.crt")
    cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tcpx-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $(<"$4")
contexts:
- name: tcpx-test
  context:
    cluster: tcpx-test
    user: $user
    namespace: default
current-context: tcpx-test
preferences: {}
EOF
    chmod 600 "$file.tmp"
    mv "$file.tmp" "$file"
}

# ------------------------------------------------------------------ commands

abort_start() {
    local rc=$?
    trap - EXIT
    if ((rc)); then
        log "start failed: stopping what it started in $START_DIR"
        cmd_stop "$START_DIR" || true
    fi
    exit "$rc"
}

cmd_start() {
    local dir=$1
    need openssl curl python3 base64
    build
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local pid name
    for name in kube-apiserver etcd; do
        if pid=$(ours "$dir" "$dir/$name.pid"); then
            die "$name of a cluster in $dir is running (pid $pid): '$0 stop $dir' first"
        fi
    done
    # A new cluster each time: what an earlier one left in DIR goes.
    rm -rf "$dir/etcd" "$dir/apiserver-certs" "$dir"/{kubeconfig,kubeconfig-limited,cluster.env} \
        "$dir"/{etcd,kube-apiserver}.{pid,log}

    # Whatever fails from here on (or interrupts): stop what was started.
    START_DIR=$dir
    trap abort_start EXIT
    trap 'exit 130' INT TERM HUP

    make_credentials "$dir"
    local ports
    read -r -a ports <<<"$(free_ports 3)"
    case ${TCPX_KUBE_WATCH_CACHE:-true} in
        true | false) ;;
        *) die "TCPX_KUBE_WATCH_CACHE is '${TCPX_KUBE_WATCH_CACHE}': say true or false" ;;
    esac
    cat >"$dir/cluster.env" <<EOF
API_PORT=${ports[0]}
ETCD_CLIENT_PORT=${ports[1]}
ETCD_PEER_PORT=${ports[2]}
WATCH_CACHE=${TCPX_KUBE_WATCH_CACHE:-true}
KUBE_VERSION=$KUBE_VERSION
ETCD_VERSION=$ETCD_VERSION
EOF
    load_env "$dir"

    local started=$SECONDS
    start_etcd "$dir"
    start_apiserver "$dir"
    write_kubeconfig "$dir" "$dir/kubeconfig" tcpx-admin "$dir/admin-token"
    write_kubeconfig "$dir" "$dir/kubeconfig-limited" tcpx-limited "$dir/limited-token"
    trap - EXIT INT TERM HUP
    log "kube-apiserver $KUBE_VERSION on https://127.0.0.1:$API_PORT (pid $(<"$dir/kube-apiserver.pid")), etcd $ETCD_VERSION on 127.0.0.1:$ETCD_CLIENT_PORT (pid $(<"$dir/etcd.pid")), ready in $((SECONDS - started)) s"
    echo "$dir/kubeconfig"
}

cmd_stop() {
    local dir=$1
    [[ -d $dir ]] || die "no folder $dir"
    dir=$(cd "$dir" && pwd)
    stop_one "$dir" kube-apiserver
    stop_one "$dir" etcd
}

cmd_restart_apiserver() {
    local dir=$1
    dir=$(cd "$dir" 2>/dev/null && pwd) || die "no folder $1"
    load_env "$dir"
    ours "$dir" "$dir/etcd.pid" >/dev/null || die "etcd of the cluster in $dir is not running"
    stop_one "$dir" kube-apiserver
    start_apiserver "$dir"
    log "kube-apiserver restarted on https://127.0.0.1:$API_PORT (pid $(<"$dir/kube-apiserver.pid"))"
}

cmd_etcd_compact() {
    local dir=$1 rev
    dir=$(cd "$dir" 2>/dev/null && pwd) || die "no folder $1"
    load_env "$dir"
    ours "$dir" "$dir/etcd.pid" >/dev/null || die "etcd of the cluster in $dir is not running"
    need curl python3 base64
    # Two writes of a key outside Kubernetes' /registry first, so that the
    # revision compacted to is above every resourceVersion handed out before,
    # even the latest one: a watch from resourceVersion R reads etcd from
    # R+1, and etcd keeps the revision it compacts to.
    local key value i
    key=$(printf %s /tcpx-test-cluster/compaction-marker | base64 -w0)
    for i in 1 2; do
        value=$(printf %s "$i" | base64 -w0)
        rev=$(etcd_post "$dir" /v3/kv/put "{\"key\":\"$key\",\"value\":\"$value\"}" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])')
    done
    [[ $rev =~ ^[0-9]+$ ]] || die "etcd gave no revision ('$rev')"
    etcd_post "$dir" /v3/kv/compaction "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null
    log "etcd compacted to revision $rev"
    echo "$rev"
}

(($# >= 1)) || usage
case $1 in
    start | stop | restart-apiserver | etcd-compact)
        (($# == 2)) || usage
        [[ -n $2 ]] || usage
        ;;
    build) (($# == 1)) || usage ;;
    *) usage ;;
esac
case $1 in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    restart-apiserver) cmd_restart_apiserver "$2" ;;
    etcd-compact) cmd_etcd_compact "$2" ;;
    build) build ;;
esac

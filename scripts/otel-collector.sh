#!/usr/bin/env bash
# A real OpenTelemetry Collector for tests: an OTLP receiver on 127.0.0.1
# (gRPC and HTTP, optionally TLS) that writes what it receives as OTLP JSON
# lines, so a test can send with the exporter's OTLP client and read back
# exactly what arrived.
#
#   scripts/otel-collector.sh start DIR [--tls CERT KEY [CLIENT_CA]]
#                                 start a collector; prints DIR/endpoints last
#   scripts/otel-collector.sh stop DIR    stop the collector that `start DIR` started
#   scripts/otel-collector.sh path        print the collector binary's path (fails if not built)
#   scripts/otel-collector.sh build       only build the binary (CI warm-up)
#
# What `start DIR` leaves in DIR (everything of a collector lives there):
#   endpoints     two lines, `grpc=127.0.0.1:PORT` and `http=127.0.0.1:PORT`
#                 (OTLP/HTTP paths are /v1/metrics, /v1/logs, /v1/traces)
#   metrics.json, logs.json, traces.json
#                 what arrived: one line per export request the collector
#                 took in, each line one OTLP JSON object
#                 ({"resourceMetrics":[...]}, {"resourceLogs":[...]},
#                 {"resourceSpans":[...]}), flushed within 100 ms; truncated
#                 at start
#   config.yaml, otelcol.pid, otelcol.log (the collector's own log, with a
#   line per request from the debug exporter)
# With --tls, both ports serve TLS with CERT and KEY (PEM files); with
# CLIENT_CA too, a client must present a certificate that CLIENT_CA signed.
# Ports are free ports the kernel picks, and the collector's own metrics are
# off (nothing listens on its default :8888), so collectors run side by side.
# No batch processor in the pipelines: a line in metrics.json is one request
# as the client sent it (the binary has the batch processor, should a test
# want one).
#
# The binary: an OpenTelemetry Collector with only the OTLP receiver, the
# debug and file exporters and the batch processor, all at collector release
# $OTELCOL_VERSION (core modules v1.x at $OTELCOL_STABLE_VERSION), built from
# their Go modules by the OpenTelemetry Collector Builder of the same
# release, once per machine (a few minutes on 2 cores), then reused. The
# cache is ${TCPX_OTEL_CACHE:-/var/cache/tcp-exporter}: the binary in
# otelcol-$OTELCOL_VERSION/, Go's module and build caches in go/ beside it,
# so that a new pin reuses the modules it shares with the old one.
#
# Settings read from the environment:
#   TCPX_OTEL_CACHE          where the binary is built and kept
#   TCPX_OTEL_START_TIMEOUT  seconds to wait for the collector to listen on
#                            both ports (default 30)
#
# Needs go (to build), python3 (free ports), flock.
# Makes no network connection but to the Go module proxy (first build) and
# 127.0.0.1.
set -euo pipefail

# The newest release whose contrib fileexporter resolves with this machine's
# Go (1.26). A release has two numbers: v0.N.0 for the beta modules (and
# contrib), v1.M.0 for the stable core modules (confmap, pdata, component);
# the builder's --skip-strict-versioning=false checks that they agree.
OTELCOL_VERSION=v0.161.0
OTELCOL_STABLE_VERSION=v1.67.0
CACHE=${TCPX_OTEL_CACHE:-/var/cache/tcp-exporter}
BIN_DIR=$CACHE/otelcol-$OTELCOL_VERSION
OTELCOL=$BIN_DIR/otelcol
GO_DIR=$CACHE/go
START_TIMEOUT=${TCPX_OTEL_START_TIMEOUT:-30}
ME=otel-collector

# log, die, usage, need, free_ports, alive.
# shellcheck source=scripts/test-infra.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-infra.sh"

# ------------------------------------------------------------------ build

# The builder's manifest. Only the file, env and yaml config providers: the
# http(s) ones would let a config fetch from the network.
write_manifest() {
    local src=$1 core=go.opentelemetry.io/collector
    local contrib=github.com/open-telemetry/opentelemetry-collector-contrib
    cat >"$src/builder.yaml" <<EOF
dist:
  module: tcpx.invalid/otelcol
  name: otelcol
  description: OpenTelemetry Collector for tcp-exporter's tests
  version: ${OTELCOL_VERSION#v}-tcpx
  output_path: $src/dist
receivers:
  - gomod: $core/receiver/otlpreceiver $OTELCOL_VERSION
exporters:
  - gomod: $core/exporter/debugexporter $OTELCOL_VERSION
  - gomod: $contrib/exporter/fileexporter $OTELCOL_VERSION
processors:
  - gomod: $core/processor/batchprocessor $OTELCOL_VERSION
providers:
  - gomod: $core/confmap/provider/envprovider $OTELCOL_STABLE_VERSION
  - gomod: $core/confmap/provider/fileprovider $OTELCOL_STABLE_VERSION
  - gomod: $core/confmap/provider/yamlprovider $OTELCOL_STABLE_VERSION
telemetry:
  gomod: $core/service $OTELCOL_VERSION
  import: $core/service/telemetry/otelconftelemetry
EOF
}

build() {
    [[ -x $OTELCOL ]] && return 0
    command -v go >/dev/null ||
        die "go not found: a Go toolchain builds the collector once into $BIN_DIR"
    need flock
    if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w $CACHE ]]; then
        die "cannot write the cache folder $CACHE: run as root, or set TCPX_OTEL_CACHE to a writable folder"
    fi
    # One build at a time per machine; whoever waited finds the binary.
    exec {lock}>"$CACHE/.otelcol-$OTELCOL_VERSION.lock"
    flock "$lock"
    if [[ -x $OTELCOL ]]; then
        exec {lock}>&-
        return 0
    fi
    local src=$BIN_DIR.build blog=$BIN_DIR.build.log started=$SECONDS
    rm -rf "$src"
    mkdir -p "$src"
    log "building the OpenTelemetry Collector $OTELCOL_VERSION into $BIN_DIR (once per machine; log: $blog)"
    if ! (
        cd "$src"
        export GOPATH=$GO_DIR GOMODCACHE=$GO_DIR/pkg/mod GOCACHE=$GO_DIR/build-cache
        export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS="${GOFLAGS:-} -buildvcs=false"
        # The builder makes a temporary folder even when told where to write.
        export GOBIN=$src/bin TMPDIR=$src/tmp
        mkdir "$TMPDIR"
        write_manifest "$src"
        # Each step with the time it started, in the build log.
        PS4="+ \$(date +%T) "
        set -x
        go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
        # Strict versioning: fail if a module pulls the core past the pin.
        "$GOBIN/builder" --config "$src/builder.yaml" --skip-strict-versioning=false --verbose
        "$src/dist/otelcol" --version
        "$src/dist/otelcol" components
    ) >"$blog" 2>&1; then
        tail -n 30 "$blog" >&2
        die "building the OpenTelemetry Collector $OTELCOL_VERSION failed (whole log: $blog)"
    fi
    rm -rf "$BIN_DIR"
    mkdir -p "$BIN_DIR"
    # The binary, and what it was built from (generated sources, go.mod, go.sum).
    mv "$src/dist/otelcol" "$src/builder.yaml" "$BIN_DIR/"
    mkdir "$BIN_DIR/src"
    mv "$src/dist"/*.go "$src/dist/go.mod" "$src/dist/go.sum" "$BIN_DIR/src/"
    rm -rf "$src"
    log "built in $((SECONDS - started)) s: $OTELCOL"
    exec {lock}>&-
}

# ------------------------------------------------------------------ helpers


# ours DIR: the PID in DIR/otelcol.pid, if that process is alive, runs an
# otelcol binary built by this script (of any pinned version) and was started
# with DIR's config: a PID reused by another process since is left alone.
ours() {
    local dir=$1 pid exe
    [[ -s $dir/otelcol.pid ]] || return 1
    pid=$(<"$dir/otelcol.pid")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [[ $exe == "$CACHE"/otelcol-*/otelcol ]] || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "--config=$dir/config.yaml" || return 1
    echo "$pid"
}

# listening PID PORT: process PID has a socket listening on 127.0.0.1:PORT
# (the kernel accepts connections on it from then on). Read from /proc rather
# than by connecting: a probe connection on a TLS port would put a handshake
# error in the collector's log, and a listener of another process that took
# the port would pass.
listening() {
    local pid=$1 inode
    inode=$(awk -v addr="$(printf '0100007F:%04X' "$2")" \
        '$2 == addr && $4 == "0A" { print $10 }' /proc/net/tcp)
    [[ -n $inode ]] || return 1
    find "/proc/$pid/fd" -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null | grep -q .
}

# fail_with_log LOGFILE MESSAGE: the message, the log's tail, exit 1.
fail_with_log() {
    log "$2; last lines of $1:"
    tail -n 40 "$1" | sed 's/^/    /' >&2 || true
    exit 1
}

# absolute FILE: FILE's absolute path; dies if it is not a readable file.
absolute() {
    [[ -f $1 && -r $1 ]] || die "no readable file $1"
    echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

# ------------------------------------------------------------------ config

# tls_block INDENT: the receiver's TLS settings for one protocol, or nothing.
tls_block() {
    [[ -n $TLS_CERT ]] || return 0
    local pad=$1
    printf '%stls:\n' "$pad"
    printf '%s  cert_file: %s\n' "$pad" "$TLS_CERT"
    printf '%s  key_file: %s\n' "$pad" "$TLS_KEY"
    # client_ca_file makes the server require and verify client certificates.
    [[ -z $TLS_CLIENT_CA ]] || printf '%s  client_ca_file: %s\n' "$pad" "$TLS_CLIENT_CA"
}

# file_exporter NAME DIR: one file exporter writing DIR/NAME.json.
# No rotation key: with it the exporter writes unbuffered through a rotating
# logger; without it, through a buffer that flush_interval empties (1 s by
# default, too slow for a test that reads right after sending).
file_exporter() {
    cat <<EOF
  file/$1:
    path: $2/$1.json
    format: json
    flush_interval: 100ms
EOF
}

write_config() {
    local dir=$1 grpc_port=$2 http_port=$3
    {
        echo "# Written by scripts/otel-collector.sh start; rewritten at every start."
        echo "receivers:"
        echo "  otlp:"
        echo "    protocols:"
        echo "      grpc:"
        echo "        endpoint: 127.0.0.1:$grpc_port"
        tls_block "        "
        echo "      http:"
        echo "        endpoint: 127.0.0.1:$http_port"
        tls_block "        "
        echo "exporters:"
        echo "  debug:"
        echo "    verbosity: basic"
        file_exporter metrics "$dir"
        file_exporter logs "$dir"
        file_exporter traces "$dir"
        cat <<'EOF'
service:
  telemetry:
    # No own metrics, so nothing binds the default :8888 and collectors can
    # run side by side; its log goes to stderr (otelcol.log).
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file/metrics, debug]
    logs:
      receivers: [otlp]
      exporters: [file/logs, debug]
    traces:
      receivers: [otlp]
      exporters: [file/traces, debug]
EOF
    } >"$dir/config.yaml"
}

# ------------------------------------------------------------------ commands

# launch DIR: starts the collector on two new free ports; returns 0 once it
# listens on both, 3 if a port was taken meanwhile (try again),
# exits with the log otherwise.
launch() {
    local dir=$1 ports pid i
    read -r -a ports <<<"$(free_ports 2)"
    write_config "$dir" "${ports[0]}" "${ports[1]}"
    rm -f "$dir"/{metrics,logs,traces}.json "$dir/endpoints"
    "$OTELCOL" --config="$dir/config.yaml" </dev/null >"$dir/otelcol.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/otelcol.pid"
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if ! alive "$pid"; then
            wait "$pid" 2>/dev/null || true
            rm -f "$dir/otelcol.pid"
            grep -q 'address already in use' "$dir/otelcol.log" && return 3
            fail_with_log "$dir/otelcol.log" "the collector exited at start"
        fi
        if listening "$pid" "${ports[0]}" && listening "$pid" "${ports[1]}"; then
            printf 'grpc=127.0.0.1:%s\nhttp=127.0.0.1:%s\n' "${ports[0]}" "${ports[1]}" >"$dir/endpoints"
            return 0
        fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/otelcol.pid"
    fail_with_log "$dir/otelcol.log" \
        "the collector's ports 127.0.0.1:${ports[0]} (gRPC) and 127.0.0.1:${ports[1]} (HTTP) not open after $START_TIMEOUT s"
}

cmd_start() {
    local dir=$1
    shift
    TLS_CERT='' TLS_KEY='' TLS_CLIENT_CA=''
    if (($#)); then
        [[ $1 == --tls ]] || usage
        (($# == 3 || $# == 4)) || usage
        TLS_CERT=$(absolute "$2")
        TLS_KEY=$(absolute "$3")
        (($# == 4)) && TLS_CLIENT_CA=$(absolute "$4")
    fi
    need python3
    build
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local pid attempt rc
    if pid=$(ours "$dir"); then
        die "a collector for $dir is running (pid $pid): '$0 stop $dir' first"
    fi
    local started=$SECONDS
    # Another process may take a free port between our pick and the
    # collector's bind: then pick again.
    for attempt in 1 2 3; do
        rc=0
        launch "$dir" || rc=$?
        ((rc == 3)) || break
        log "a port was taken before the collector bound it (attempt $attempt): picking others"
    done
    ((rc == 0)) || fail_with_log "$dir/otelcol.log" "no free ports for the collector after 3 attempts"
    log "collector $OTELCOL_VERSION (pid $(<"$dir/otelcol.pid"))${TLS_CERT:+ with TLS} on $(paste -sd' ' "$dir/endpoints"), ready in $((SECONDS - started)) s"
    echo "$dir/endpoints"
}

cmd_stop() {
    local dir=$1 pid i
    [[ -d $dir ]] || die "no folder $dir"
    dir=$(cd "$dir" && pwd)
    if pid=$(ours "$dir"); then
        # TERM: the collector shuts down its pipelines, and the file
        # exporters flush what they hold.
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "collector (pid $pid) still running 10 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                alive "$pid" || break
                sleep 0.1
            done
            alive "$pid" && die "collector (pid $pid) does not exit even after SIGKILL"
        fi
    elif [[ -s $dir/otelcol.pid ]]; then
        log "pid $(<"$dir/otelcol.pid") in $dir/otelcol.pid is not a collector started for $dir: left alone"
    fi
    rm -f "$dir/otelcol.pid"
}

cmd_path() {
    [[ -x $OTELCOL ]] || die "the collector $OTELCOL_VERSION is not built ($OTELCOL missing): run '$0 build'"
    echo "$OTELCOL"
}

(($# >= 1)) || usage
case $1 in
    start | stop)
        (($# >= 2)) || usage
        [[ -n $2 ]] || usage
        [[ $1 == start ]] || (($# == 2)) || usage
        ;;
    build | path) (($# == 1)) || usage ;;
    *) usage ;;
esac
case $1 in
    start) cmd_start "${@:2}" ;;
    stop) cmd_stop "$2" ;;
    path) cmd_path ;;
    build)
        build
        echo "$OTELCOL"
        ;;
esac

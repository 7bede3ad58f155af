# Helpers shared by the scripts that run test infrastructure
# (kube-test-cluster.sh, otel-collector.sh); sourced, not run. They set ME
# (their name in messages) first.

log() { printf '%s: %s\n' "$ME" "$*" >&2; }
die() { printf '%s: %s\n' "$ME" "$*" >&2; exit 1; }

usage() {
    # The calling script's own usage lines.
    sed -n '/^#   scripts/,/^#   scripts.*build/p' "$0" | sed 's/^# //' >&2
    exit 2
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found: install it (make test-deps installs the Debian packages)"
    done
}

# free_ports N: N distinct ports free on 127.0.0.1 now (the kernel picks them).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# alive PID: the process exists and is not a zombie.
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $state != Z && $state != X ]]
}

# tcp-exporter's container image. Build it with `make image` (docker or
# podman); no container engine runs on the CI machine, so CI does not.
#
# Two stages: a Rust toolchain on Debian bookworm builds the release binary
# against libpcap, with all three capture backends (pcap, af-packet, and xdp:
# the cargo feature whose eBPF programs build.rs compiles from bpf/ with
# clang); the runtime is bookworm-slim with libpcap's shared library, so the
# binary finds the same glibc and libpcap it was linked against, and Debian's
# ca-certificates (the system's roots, for TLS to an OTLP receiver). The xdp
# backend adds nothing at run time: aya, which loads the programs, is pure
# Rust, and the programs are inside the binary.

FROM rust:1-bookworm AS build
# clang (with llvm) compiles bpf/tcpx.bpf.c for `-target bpf`; libbpf-dev
# gives bpf_helpers.h, linux-libc-dev the kernel's UAPI headers (build.rs
# adds Debian's multiarch include directory, where asm/types.h is).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap-dev pkg-config \
      clang llvm libbpf-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore leaves out target/, .git/, the captures and the deployment
# files; build.rs and bpf/ stay, for the xdp feature.
COPY . .
RUN cargo build --release --locked --features xdp \
 && install -D -m 0755 target/release/tcp-exporter /out/tcp-exporter

FROM debian:bookworm-slim
ARG VERSION=dev
LABEL org.opencontainers.image.title="tcp-exporter" \
      org.opencontainers.image.description="Passive TCP analysis (Wireshark-grade) exported as Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# ca-certificates: the system's roots (/etc/ssl/certs), against which the
# exporter checks an https:// --otlp-endpoint given no --otlp-ca (the
# chart's otlp.endpoint https:// without otlp.tls.secret); bookworm-slim has
# none, and without them every such export would fail its certificate check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/tcp-exporter /usr/local/bin/tcp-exporter
# Root, because capturing needs capabilities and Kubernetes gives added
# capabilities to root only (the binary carries no file capabilities). The
# Helm chart (k8s/tcp-exporter) runs it as root with every capability
# dropped except NET_RAW (pcap and af-packet backends) or BPF, NET_ADMIN and
# PERFMON (xdp backend, which needs no NET_RAW), no privilege escalation and
# a read-only root filesystem: the exporter writes no file. With docker:
#   docker run --network host --cap-drop ALL --cap-add NET_RAW
#     --read-only IMAGE -i eth0
#   docker run --network host --cap-drop ALL --cap-add BPF
#     --cap-add NET_ADMIN --cap-add PERFMON --read-only IMAGE --backend xdp -i eth0
USER 0:0
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/tcp-exporter"]

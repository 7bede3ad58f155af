# tcp-exporter's container image. Build it with `make image` (docker or
# podman); no container engine runs on the CI machine, so CI does not.
#
# Two stages: a Rust toolchain on Debian bookworm builds the release binary
# against libpcap, and the runtime is bookworm-slim with libpcap's shared
# library only, so the binary finds the same glibc and libpcap it was linked
# against.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore leaves out target/, .git/, the captures and the deployment files.
COPY . .
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/tcp-exporter /out/tcp-exporter

FROM debian:bookworm-slim
ARG VERSION=dev
LABEL org.opencontainers.image.title="tcp-exporter" \
      org.opencontainers.image.description="Passive TCP analysis (Wireshark-grade) exported as Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/tcp-exporter /usr/local/bin/tcp-exporter
# Root, because capturing needs CAP_NET_RAW and Kubernetes gives added
# capabilities to root only (the binary carries no file capabilities). The
# Helm chart (k8s/tcp-exporter) runs it as root with every capability
# dropped except NET_RAW (plus NET_ADMIN, BPF and PERFMON for the xdp
# backend), no privilege escalation and a read-only root filesystem: the
# exporter writes no file. With docker: `docker run --network host
# --cap-drop ALL --cap-add NET_RAW --read-only IMAGE -i eth0`.
USER 0:0
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/tcp-exporter"]

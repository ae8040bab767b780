# dps-server in a container.
#
#   docker build -t dps .                 # podman: add --format docker to keep HEALTHCHECK
#   docker run -d -p 443:443 -p 8883:8883 -p 9443:9443 -v dps-data:/var/lib/dps dps
#
# The first start prints the generated operator key (kept in the volume):
# create tenants with it (PUT /tenants/{name}, docs/service-api.md).
#
# Two stages: the builder compiles dps-server with the workspace's locked
# dependencies; the runtime image is Debian slim with the binary, CA roots
# (for hubs and webhooks), curl (for the health check), and nothing else.
# dps runs as the unprivileged user `dps`; the binary carries the file
# capability CAP_NET_BIND_SERVICE so it can listen on 443, the port every
# official SDK dials, without root. The configuration in /etc/dps/dps.toml
# (deploy/container/dps.toml) listens on all interfaces: 443 (HTTPS and MQTT
# over WebSocket), 8883 (MQTT) and 9443 (service API); mount your own over it.
#
# The base images are arguments, so a mirror or a pinned digest can be used:
#   docker build --build-arg RUST_IMAGE=… --build-arg RUNTIME_IMAGE=… .

ARG RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target directory between builds
# (BuildKit and Buildah); the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dps-server \
    && install -D -m 0755 target/release/dps-server /out/dps-server

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/dps --shell /usr/sbin/nologin dps \
    && install -d -o dps -g dps -m 0750 /var/lib/dps \
    && install -d -m 0755 /etc/dps
COPY --from=builder /out/dps-server /usr/local/bin/dps-server
COPY deploy/container/dps.toml /etc/dps/dps.toml
# The capability is set after the copy: COPY does not keep extended attributes.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/dps-server \
    && apt-get purge -y --auto-remove libcap2-bin
USER dps
WORKDIR /var/lib/dps
VOLUME ["/var/lib/dps"]
EXPOSE 443 8883 9443
# Readiness (store reachable, listeners bound) from the admin listener's
# /readyz, on the admin address the server documents: 127.0.0.1:9090 inside
# the container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:9090/readyz || exit 1
ENTRYPOINT ["/usr/local/bin/dps-server"]
CMD ["--config", "/etc/dps/dps.toml"]

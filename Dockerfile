# Multi-stage build of the tokengate gateway.
# (Not built in CI: the CI machines have no Docker engine.)
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY config ./config
COPY docs ./docs
RUN cargo build --release --locked --bin tokengate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tokengate \
    && useradd --system --uid 10001 --gid tokengate --home /var/lib/tokengate --create-home tokengate
COPY --from=build /src/target/release/tokengate /usr/local/bin/tokengate
COPY config/docker.yaml /etc/tokengate/tokengate.yaml
# Numeric, so that Kubernetes' runAsNonRoot can check it (deploy/kubernetes).
USER 10001:10001
WORKDIR /var/lib/tokengate
VOLUME /var/lib/tokengate
EXPOSE 8080 9090
# Memory freed by closed client connections goes back to the system at once
# (mimalloc otherwise keeps it until later allocations; BENCHMARKS.md).
ENV MIMALLOC_PURGE_DELAY=0
ENTRYPOINT ["tokengate"]
CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml"]

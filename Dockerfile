# syntax=docker/dockerfile:1
# Multi-stage release build of `edgesteer`. The builder installs exactly what
# .ci/run installs (scripts/setup.sh: cmake for Pingora's libz-ng-sys).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh
COPY . .
RUN cargo build --release --locked -p edgesteer \
 && install -m 0755 target/release/edgesteer /usr/local/bin/edgesteer

FROM debian:bookworm-slim AS runtime
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin edgesteer
COPY --from=build /usr/local/bin/edgesteer /usr/local/bin/edgesteer
COPY examples/ /etc/edgesteer/examples/
# /var/lib/edgesteer: the last good table (--cache), kept across restarts
# when a volume is mounted there. /run/edgesteer: the upgrade socket and
# pid file (mode 0700, the service user's).
RUN install -d -m 0700 -o 10001 -g 10001 /var/lib/edgesteer /run/edgesteer
VOLUME ["/var/lib/edgesteer"]
ENV EDGESTEER_CACHE=/var/lib/edgesteer/last-good-table.json \
    EDGESTEER_RUNTIME_DIR=/run/edgesteer
USER 10001:10001
# 8080: traffic; 9091: /metrics and /healthz only, for scrapers. The admin
# API stays on the container's loopback (`docker exec ... curl 127.0.0.1:9090`);
# to expose it (plain HTTP), pass EDGESTEER_ADMIN_TOKENS
# (read:NAME=SECRET,ops:NAME=SECRET) from a secret with --admin 0.0.0.0:9090
# and --insecure-admin-plaintext; it refuses to start without either.
EXPOSE 8080 8443 9091
# The bundled geo database is embedded in the binary; mount a fresher one
# and pass --geo-db to use it.
# `docker stop` sends SIGTERM: no new connections, in-flight requests get
# --grace-period (5 s) to finish; give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/edgesteer"]
CMD ["proxy", "--config", "/etc/edgesteer/examples/covergen.toml", "--listen", "0.0.0.0:8080", "--admin", "127.0.0.1:9090", "--metrics", "0.0.0.0:9091"]

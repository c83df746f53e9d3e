# The hoist-proxy image: one static binary on `scratch`, under two names.
#
# Its defaults are Kamal's, so a Kamal user only points `proxy.run.repository` at it: the user
# kamal-proxy (uid/gid 1001, as in kamal-proxy's image, so an existing `kamal-proxy-config` volume
# stays writable), `kamal-proxy run`, and state in /home/kamal-proxy/.config/kamal-proxy where
# Kamal mounts that volume. hoist creates its container with its own: uid/gid 65532,
# `hoist-proxy run`, and HOIST_PROXY_STATE_DIR=/var/lib/hoist-proxy (the `hoist-proxy` volume).
# The `org.opencontainers.image.title` label is the one Kamal prunes the proxy container by.
#
# Two targets package the same files:
#
#   release (the last stage, the default): compiles inside the official Rust image, once per
#   platform, so under buildx with QEMU it also builds linux/arm64:
#     docker buildx build --platform linux/amd64,linux/arm64 -t hoist-proxy .
#
#   local (the first stage, so the legacy builder stops there): packages a static binary
#   already built on this x86_64 machine, for tests and quick iteration without pulls:
#     scripts/build-static hoist-proxy
#     DOCKER_BUILDKIT=0 docker build --target local -t hoist-proxy:dev .
#
# Keep the packaging lines of both stages identical. This file avoids BuildKit-only syntax
# (RUN --mount, COPY --link/--chmod) because the legacy builder parses every stage, even the
# ones it does not build.

# ---- local: package target/x86_64-unknown-linux-gnu/release/hoist-proxy ------------------
FROM scratch AS local
LABEL org.opencontainers.image.title="kamal-proxy" \
      org.opencontainers.image.source="https://github.com/hoist-deploy/hoist" \
      org.opencontainers.image.description="hoist-proxy: zero-downtime reverse proxy for hoist deploys" \
      org.opencontainers.image.licenses="MIT"
COPY proxy/image/rootfs/etc/ /etc/
COPY proxy/image/rootfs/usr/ /usr/
COPY --chown=65532:65532 proxy/image/rootfs/var/lib/hoist-proxy/ /var/lib/hoist-proxy/
COPY --chown=1001:1001 proxy/image/rootfs/home/ /home/
COPY target/x86_64-unknown-linux-gnu/release/hoist-proxy /usr/local/bin/hoist-proxy
ENV PATH=/usr/local/bin
USER 1001:1001
EXPOSE 80 443
CMD ["kamal-proxy", "run"]

# ---- build: a static binary for the platform this stage runs on -------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# crt-static links glibc statically; an explicit --target keeps the flag away from build
# scripts and proc macros, which must stay dynamic. `uname -m` is x86_64 or aarch64.
RUN set -eux; \
    target="$(uname -m)-unknown-linux-gnu"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" -p hoist-proxy; \
    mkdir -p /out; \
    cp "target/$target/release/hoist-proxy" /out/hoist-proxy

# ---- release (default): package the binary built above -----------------------------------
FROM scratch AS release
LABEL org.opencontainers.image.title="kamal-proxy" \
      org.opencontainers.image.source="https://github.com/hoist-deploy/hoist" \
      org.opencontainers.image.description="hoist-proxy: zero-downtime reverse proxy for hoist deploys" \
      org.opencontainers.image.licenses="MIT"
COPY proxy/image/rootfs/etc/ /etc/
COPY proxy/image/rootfs/usr/ /usr/
COPY --chown=65532:65532 proxy/image/rootfs/var/lib/hoist-proxy/ /var/lib/hoist-proxy/
COPY --chown=1001:1001 proxy/image/rootfs/home/ /home/
COPY --from=build /out/hoist-proxy /usr/local/bin/hoist-proxy
ENV PATH=/usr/local/bin
USER 1001:1001
EXPOSE 80 443
CMD ["kamal-proxy", "run"]

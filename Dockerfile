# The hoist-proxy image: one static binary on `scratch`, running as uid/gid 65532, with its
# state directory at /var/lib/hoist-proxy (mount the named volume there).
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
LABEL org.opencontainers.image.source="https://github.com/hoist-deploy/hoist" \
      org.opencontainers.image.description="hoist-proxy: zero-downtime reverse proxy for hoist deploys" \
      org.opencontainers.image.licenses="MIT"
COPY proxy/image/rootfs/etc/ /etc/
COPY --chown=65532:65532 proxy/image/rootfs/var/lib/hoist-proxy/ /var/lib/hoist-proxy/
COPY target/x86_64-unknown-linux-gnu/release/hoist-proxy /usr/local/bin/hoist-proxy
ENV PATH=/usr/local/bin HOIST_PROXY_STATE_DIR=/var/lib/hoist-proxy
USER 65532:65532
EXPOSE 80 443
CMD ["hoist-proxy", "run"]

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
LABEL org.opencontainers.image.source="https://github.com/hoist-deploy/hoist" \
      org.opencontainers.image.description="hoist-proxy: zero-downtime reverse proxy for hoist deploys" \
      org.opencontainers.image.licenses="MIT"
COPY proxy/image/rootfs/etc/ /etc/
COPY --chown=65532:65532 proxy/image/rootfs/var/lib/hoist-proxy/ /var/lib/hoist-proxy/
COPY --from=build /out/hoist-proxy /usr/local/bin/hoist-proxy
ENV PATH=/usr/local/bin HOIST_PROXY_STATE_DIR=/var/lib/hoist-proxy
USER 65532:65532
EXPOSE 80 443
CMD ["hoist-proxy", "run"]

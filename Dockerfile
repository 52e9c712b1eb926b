# nodemedic's images, built where a registry is reachable:
#
#   docker build --target agent -t nodemedic-agent:0.1.0 .
#   docker build --target collector -t nodemedic-collector:0.1.0 .
#
# The runtime stage is distroless's glibc base (libc, libm, libgcc_s and CA certificates;
# no shell). scripts/images builds the same images without a registry: the binaries packed
# FROM scratch with exactly the libraries they link.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nodemedic-agent --bin nodemedic-collector --bin nodemedic \
    && strip --strip-debug target/release/nodemedic-agent target/release/nodemedic-collector target/release/nodemedic \
    && mkdir -p /out/var/lib/nodemedic

# The agent runs as root: it reads root's files on the node (deploy/README.md says why).
FROM gcr.io/distroless/cc-debian12 AS agent
COPY --from=build /src/target/release/nodemedic-agent /usr/bin/nodemedic-agent
ENTRYPOINT ["/usr/bin/nodemedic-agent"]

# The collector, and the CLI beside it for `kubectl exec`.
FROM gcr.io/distroless/cc-debian12:nonroot AS collector
COPY --from=build /src/target/release/nodemedic-collector /usr/bin/nodemedic-collector
COPY --from=build /src/target/release/nodemedic /usr/bin/nodemedic
COPY --from=build --chown=65532:65532 /out/var/lib/nodemedic /var/lib/nodemedic
ENV SQLITE_TMPDIR=/var/lib/nodemedic
VOLUME /var/lib/nodemedic
EXPOSE 9440 9441
USER 65532:65532
ENTRYPOINT ["/usr/bin/nodemedic-collector"]

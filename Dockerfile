# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from distroless (glibc + CA certificates, no
# shell, non-root). Build: docker build -t stream-edge .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo loads every workspace member, so each is copied, though only the gateway and the emulator
# are compiled.
COPY emulator ./emulator
COPY loadgen ./loadgen
COPY fuzz/Cargo.toml ./fuzz/Cargo.toml
COPY fuzz/fuzz_targets ./fuzz/fuzz_targets
# Keep symbols for backtraces, drop DWARF to keep the image small.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stream-edge \
    && cp target/release/stream-edge /usr/local/bin/stream-edge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/stream-edge /usr/local/bin/stream-edge
# The distroless `nonroot` user; deploy/ sets runAsUser to the same id.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/stream-edge"]
# For `docker run -p 8080:8080 -p 9090:9090`: listen beyond loopback. Kubernetes manifests
# replace these arguments with `serve --config FILE`, so the file decides there.
CMD ["serve", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:9090"]

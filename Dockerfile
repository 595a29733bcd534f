# Builds the medic binary. librdkafka, OpenSSL and zlib are compiled from
# source by the Rust build, so only a C toolchain, make and perl are needed.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/medic

# CA certificates for HTTPS to Slack, GitHub, GitLab and SMTP over TLS.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 medic
COPY --from=build /src/target/release/medic /usr/local/bin/medic
USER medic
ENTRYPOINT ["medic"]
CMD ["run", "all"]

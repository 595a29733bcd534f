# Builds the medic binary. librdkafka, OpenSSL and zlib are compiled from
# source by the Rust build, so only a C toolchain, make and perl are needed.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/medic

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 medic
COPY --from=build /src/target/release/medic /usr/local/bin/medic
USER medic
ENTRYPOINT ["medic"]
CMD ["run", "all"]

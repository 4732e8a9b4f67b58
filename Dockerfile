# igw's image: one `igw` binary, the endpoint picker and the simulator both
# (`igw epp run`, `igw sim serve`); deploy/ runs it as either.
#   docker build -t igw:latest .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin igw \
    && strip target/release/igw

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/igw /usr/local/bin/igw
USER 65532:65532
# 8080 gateway, 9002 ext_proc, 9003 gRPC health, 9090 metrics and admin; 8000 simulator.
EXPOSE 8080 9002 9003 9090 8000
ENTRYPOINT ["/usr/local/bin/igw"]

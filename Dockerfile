# shard-proxy image: a static binary on distroless, running as nonroot.
#   docker build -t shard-proxy:0.1.0 .
# The build stage runs exactly the command that test/dockerfile checks with
# plain `go build` (no Docker engine needed for that check).

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY ring/ ring/
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/shard-proxy ./cmd/shard-proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shard-proxy /shard-proxy
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/shard-proxy"]

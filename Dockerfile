# weft's image: weft-agent, weftctl and the CNI plugins it installs
# (weft-cni, and portmap and loopback built from containernetworking/plugins).
# Static binaries; the final stage is Debian slim because knftables drives
# the `nft` CLI, which the agent needs for anti-spoofing and egress NAT.
FROM golang:1.26-bookworm AS build
WORKDIR /src
# PREBUILT names a directory of the build context that already holds these
# five binaries, built exactly so (make image does, with the host's Go
# cache, instead of compiling everything again here); empty: build here.
ARG PREBUILT=
COPY go.mod go.sum ./
RUN [ -n "$PREBUILT" ] || go mod download
COPY . .
ENV CGO_ENABLED=0
RUN if [ -n "$PREBUILT" ]; then \
      mkdir -p /out/cni && cp "$PREBUILT/weft-agent" "$PREBUILT/weftctl" /out/ \
      && cp "$PREBUILT/weft-cni" "$PREBUILT/portmap" "$PREBUILT/loopback" /out/cni/; \
    else \
      go build -trimpath -ldflags=-s -o /out/ ./cmd/weft-agent ./cmd/weftctl ./cmd/weft-cni \
      && go build -trimpath -ldflags=-s -o /out/cni/ \
           github.com/containernetworking/plugins/plugins/meta/portmap \
           github.com/containernetworking/plugins/plugins/main/loopback \
      && mv /out/weft-cni /out/cni/; \
    fi

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables \
 && rm -rf /var/lib/apt/lists/*
# VERSION names the release; the agent logs it (WEFT_VERSION) at start.
ARG VERSION=dev
LABEL org.opencontainers.image.version=$VERSION
ENV WEFT_VERSION=$VERSION
COPY --from=build /out/weft-agent /out/weftctl /usr/local/bin/
COPY --from=build /out/cni/ /opt/weft/cni/
ENTRYPOINT ["/usr/local/bin/weft-agent"]

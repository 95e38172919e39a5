# syntax=docker/dockerfile:1
# One image for every role: the operator Deployment runs `/outrigger operator`, and the
# injector adds the same image to application pods as the daprd sidecar.
#   docker build --build-arg VERSION=... --build-arg GIT_COMMIT=... -t IMG .   (make docker-build)
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG GIT_COMMIT=

WORKDIR /workspace
# Dependencies first, in their own layer, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

# .dockerignore keeps out what the build does not need. config/ must stay: the binary
# embeds the generated CRDs and webhook configurations from it.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/outrigger-dev/outrigger/internal/version.Version=${VERSION} -X github.com/outrigger-dev/outrigger/internal/version.GitCommit=${GIT_COMMIT}" \
      -o /outrigger ./cmd/outrigger

# Static binary, no shell, non-root. The numeric USER lets Kubernetes verify runAsNonRoot.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /outrigger /outrigger
USER 65532:65532

ENTRYPOINT ["/outrigger"]

#!/usr/bin/env bash
# Builds the static blobgc binary and the image blobgc:dev from it.
#
#   scripts/docker-image.sh [TAG]        # default tag: $BLOBGC_IMAGE or blobgc:dev
#
# No base image can be pulled, so the image is FROM scratch and the build
# context holds nothing but the binary. BLOBGC_CONTEXT_DIR names the context
# directory to use (it is kept, so callers can run the same binary on the
# host); by default a temporary one is used and removed.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-${BLOBGC_IMAGE:-blobgc:dev}}"
ctx="${BLOBGC_CONTEXT_DIR:-}"
if [[ -z "$ctx" ]]; then
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
fi
mkdir -p "$ctx"
# Only the binary goes into the context.
rm -f "$ctx/blobgc"
if [[ -n "$(ls -A "$ctx")" ]]; then
  echo "docker-image.sh: context directory $ctx is not empty; the build context must hold only the binary" >&2
  exit 1
fi

# The commit is passed explicitly too: the toolchain does not stamp it in
# every checkout (worktrees, GOFLAGS=-buildvcs=false).
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.commit=$(git rev-parse HEAD 2>/dev/null)" -o "$ctx/blobgc" ./cmd/blobgc
docker build --quiet --file Dockerfile --tag "$tag" "$ctx" >/dev/null
echo "built image $tag"

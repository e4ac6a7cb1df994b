#!/usr/bin/env bash
# Regenerates the Go code of every .proto in the repository.
# Needs protoc (Debian: protobuf-compiler) and the Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
git ls-files --cached --others --exclude-standard '*.proto' | while read -r proto; do
  protoc --proto_path=. \
    --go_out=. --go_opt=module=github.com/blobgc/blobgc \
    --go-grpc_out=. --go-grpc_opt=module=github.com/blobgc/blobgc \
    "$proto"
done

#!/usr/bin/env bash
# Regenerates the Go code of every .proto in the repository, and for the client
# API its HTTP/JSON gateway and OpenAPI description (routes in
# api/blobgc/v1/blobgc_http.yaml).
# Needs protoc (Debian: protobuf-compiler) and the Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
#   go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
#   go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
git ls-files --cached --others --exclude-standard '*.proto' | while read -r proto; do
  protoc --proto_path=. \
    --go_out=. --go_opt=module=github.com/blobgc/blobgc \
    --go-grpc_out=. --go-grpc_opt=module=github.com/blobgc/blobgc \
    "$proto"
done

api=api/blobgc/v1
protoc --proto_path=. \
  --grpc-gateway_out=. --grpc-gateway_opt=module=github.com/blobgc/blobgc \
  --grpc-gateway_opt=grpc_api_configuration=$api/blobgc_http.yaml \
  --grpc-gateway_opt=generate_unbound_methods=true \
  --grpc-gateway_opt=standalone=false \
  --openapiv2_out=. \
  --openapiv2_opt=grpc_api_configuration=$api/blobgc_http.yaml \
  --openapiv2_opt=generate_unbound_methods=true \
  --openapiv2_opt=json_names_for_fields=false \
  $api/blobgc.proto

#!/usr/bin/env bash
# The project's test command: static checks, then every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -race -count=1 -timeout 25m ./...
# The dashboard and alert rules, checked with Prometheus's own parsers in a
# module of their own (deploy/), so those packages stay out of blobgc's.
(cd deploy && go vet ./... && go test -count=1 ./...)

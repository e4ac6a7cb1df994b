#!/usr/bin/env bash
# blobgc side by side with etcd on this machine: a 3-server blobgc cluster
# (real `blobgc server` processes) and a 3-member etcd cluster (embedded
# go.etcd.io/etcd/server/v3, one process per member), the same workloads in
# interleaved rounds. Writes results.json, results.md and PNG plots into
# --out (default bench-results/). The comparison tool is its own module
# (benchmarks/), so the product's go.mod carries no etcd.
#   scripts/bench.sh [--rounds N] [--duration D] [--failovers N] [--out DIR]
#                    [--blobgc-args "--log-store=wal"] [--only NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/blobgc" ./cmd/blobgc
(cd benchmarks && go build -o "$work/compare" .)
"$work/compare" --blobgc "$work/blobgc" "$@"

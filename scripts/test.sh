#!/usr/bin/env bash
# The project's test command: static checks, then every test with the race
# detector. This is what CI runs (.ci/run).
#
#   scripts/test.sh            the full run, container and chaos suites included
#   scripts/test.sh --short    go test -short for the edit-test loop: skips the
#                              container suite (system_test/docker) and every
#                              chaos scenario (TestChaos_*, TestProcChaos_*)
#
# BLOBGC_TEST_TIMEOUT_SCALE multiplies the raft timings and hang deadlines of
# the tests (see internal/testtiming), e.g. 2 on a very slow machine.
set -euo pipefail
cd "$(dirname "$0")/.."

short=false
for arg in "$@"; do
	case "$arg" in
	--short) short=true ;;
	-h|--help) sed -n '2,/^[^#]/{/^#/p;}' "$0"; exit 0 ;;
	*) echo "unknown argument: $arg" >&2; exit 2 ;;
	esac
done

# The browser test of the operator's page (gateway/browser_test.go) drives
# Debian's chromium: install it when missing. Where it cannot be installed
# the test skips and says so.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo -n); fi
  if ! { "${as_root[@]}" apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium; }; then
    echo "test.sh: chromium could not be installed; the browser test will skip" >&2
  fi
fi
# Screenshots the browser test takes are kept here.
export BLOBGC_TEST_ARTIFACTS="${BLOBGC_TEST_ARTIFACTS:-${TMPDIR:-/tmp}/blobgc-test-artifacts}"
echo "test.sh: test artifacts (screenshots of /ui) go to $BLOBGC_TEST_ARTIFACTS"

go vet ./...
if $short; then
	go test -race -short -count=1 -timeout 10m -skip '^Test(Proc|Docker)?Chaos_' ./...
else
	go test -race -count=1 -timeout 25m ./...
	# The dashboard and alert rules, checked with Prometheus's own parsers in a
	# module of their own (deploy/), so those packages stay out of blobgc's.
	(cd deploy && go vet ./... && go test -count=1 ./...)
	# The comparison with etcd (scripts/bench.sh) is a module of its own
	# (benchmarks/): it must keep building against the packages it drives.
	(cd benchmarks && go vet ./...)
	# Concurrent writes must share raft log writes: 16 clients at least 3x
	# the Pin throughput of one, measured in one run.
	./scripts/throughput-check.sh
fi

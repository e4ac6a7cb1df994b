#!/usr/bin/env bash
# The project's test command: static checks, then every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

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
go test -race -count=1 -timeout 25m ./...

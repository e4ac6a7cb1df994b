#!/usr/bin/env bash
# Runs Docker Compose with the given arguments: the `docker compose` plugin
# when it is installed, else the standalone `docker-compose`.
#
#   scripts/compose.sh up -d
#   scripts/compose.sh --profile five up -d
#   scripts/compose.sh down -v
set -euo pipefail
# Without -f or COMPOSE_FILE, use the repository's compose file from any
# directory; without -p or COMPOSE_PROJECT_NAME the project is "blobgc".
export COMPOSE_FILE="${COMPOSE_FILE:-$(cd "$(dirname "$0")/.." && pwd)/docker-compose.yml}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-blobgc}"
if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
elif command -v docker-compose >/dev/null 2>&1; then
  exec docker-compose "$@"
fi
echo "compose.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
exit 127

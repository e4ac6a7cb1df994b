#!/usr/bin/env bash
# Runs Docker Compose with the given arguments: the `docker compose` plugin
# when it is installed, else the standalone `docker-compose`.
#
#   scripts/compose.sh up -d
#   scripts/compose.sh --profile five up -d
#   scripts/compose.sh --profile five down -v
#
# The profile "five" also adds docker-compose.five.yml (blobgc4, blobgc5 and
# their volumes) to docker-compose.yml, so that a 3-server cluster has no
# trace of them (COMPOSE_PROFILES=five does the same).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Without -p or COMPOSE_PROJECT_NAME the project is "blobgc".
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-blobgc}"

# Without COMPOSE_FILE, use the repository's compose files from any
# directory.
five=false
own_files=false
[[ -n "${COMPOSE_FILE:-}" ]] && own_files=true
[[ ",${COMPOSE_PROFILES:-}," == *,five,* ]] && five=true
prev=""
for arg in "$@"; do
  case "$arg" in
    --profile=five) five=true ;;
  esac
  [[ "$prev" == "--profile" && "$arg" == "five" ]] && five=true
  prev="$arg"
done
files=()
if ! $own_files; then
  files=(-f "$root/docker-compose.yml")
  if $five; then
    files+=(-f "$root/docker-compose.five.yml")
  fi
fi

if docker compose version >/dev/null 2>&1; then
  exec docker compose "${files[@]}" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
  exec docker-compose "${files[@]}" "$@"
fi
echo "compose.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
exit 127

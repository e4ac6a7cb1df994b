#!/usr/bin/env bash
# Runs chaos scenarios (in-process, server processes or containers) and prints a summary table.
#
#   scripts/chaos.sh [--scenario NAME|all] [--servers 3|5] [--duration 30s] [--seed N] [--count N]
#   scripts/chaos.sh --level inproc|proc|docker [--servers 3|5] [--duration 30s] [--seed N] [--count N]
#
# In-process scenarios (package chaos): LeaderIsolated MinorityPartition
# MajorityPartition OneWayPartition Delays Drops CrashRestart Mixed None;
# server processes (package system_test, SIGKILL/SIGSTOP): ProcLeaderKill
# ProcRandomKill ProcLeaderPause ProcRestartAll ProcMixed5
# ProcKillWithSnapshots ProcClockSkew; all = every one of these.
# Containers (package system_test/docker, needs Docker and Compose; docker
# kill/start, network disconnect/connect, restart): DockerKillLeader
# DockerPartitionLeader DockerRestartRandom DockerMixed5
# DockerCatchesUnsafeSweeper; --level docker runs them all.
# --level runs every scenario of one level instead of --scenario.
# --servers overrides a scenario's own server count; --duration is each
# scenario's fault phase.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=all level='' servers=0 duration=8s seed=0 count=1
while [[ $# -gt 0 ]]; do
	case "$1" in
	--scenario) scenario="$2"; shift 2 ;;
	--level) level="$2"; shift 2 ;;
	--servers) servers="$2"; shift 2 ;;
	--duration) duration="$2"; shift 2 ;;
	--seed) seed="$2"; shift 2 ;;
	--count) count="$2"; shift 2 ;;
	-h|--help) sed -n '2,19p' "$0"; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done

if [[ -n "$level" ]]; then
	case "$level" in
	inproc) pkgs=(./chaos/); run='^TestChaos_' ;;
	proc) pkgs=(./system_test/); run='^TestProcChaos_' ;;
	docker) pkgs=(./system_test/docker/); run='^TestDockerChaos_' ;;
	*) echo "--level: one of inproc, proc, docker" >&2; exit 2 ;;
	esac
elif [[ "$scenario" == all ]]; then
	pkgs=(./chaos/ ./system_test/)
	run='^Test(Proc)?Chaos_'
elif [[ "$scenario" == Docker* ]]; then
	pkgs=(./system_test/docker/)
	run="^TestDockerChaos_${scenario#Docker}\$"
elif [[ "$scenario" == Proc* ]]; then
	pkgs=(./system_test/)
	run="^TestProcChaos_${scenario#Proc}\$"
else
	pkgs=(./chaos/)
	run="^TestChaos_${scenario}\$"
fi

report=$(mktemp)
log=$(mktemp)
trap 'rm -f "$report" "$log"' EXIT

# The go test timeout grows with the soak duration: about 12 s of setup and
# checks per scenario on top of the fault phase.
case "$duration" in
*ms) secs=1 ;;
*s) secs=${duration%s} ;;
*m) secs=$(( ${duration%m} * 60 )) ;;
*h) secs=$(( ${duration%h} * 3600 )) ;;
*) echo "--duration: use a Go duration like 30s, 10m or 1h" >&2; exit 2 ;;
esac
secs=${secs%.*}
timeout=$(( (secs + 30) * 10 * count + 300 ))s

status=0
BLOBGC_CHAOS_REPORT="$report" go test -race -count="$count" -timeout "$timeout" -run "$run" "${pkgs[@]}" \
	-args -chaos.duration="$duration" -chaos.servers="$servers" -chaos.seed="$seed" >"$log" 2>&1 || status=$?

grep -E -- '--- (PASS|FAIL)|invariant [0-9]|seed [0-9]+' "$log" | grep -v '(expected)' || true
echo
echo "| scenario | servers | duration | faults | ops ok | ops failed | ops unknown | leader changes | longest write unavailability | acked writes lost | marks checked | files deleted | violations |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
cat "$report"
if [[ $status -ne 0 ]]; then
	echo
	tail -n 40 "$log"
	echo "chaos: FAILED (exit $status)" >&2
fi
exit $status

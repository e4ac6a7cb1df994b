#!/usr/bin/env bash
# Runs the project's test command (scripts/test.sh) several times in a row
# while a CPU burner keeps every core busy, and prints each run's result,
# duration and load average: the tests must pass on a busy machine.
#
#   scripts/stress-tests.sh [--runs N] [--burners N] [--short]
#
#   --runs N      how many runs (default 3)
#   --burners N   CPU burners (default: twice the number of cores)
#   --short       run scripts/test.sh --short instead of the full command
#
# The burner is stress-ng --cpu N (Debian/Ubuntu package stress-ng,
# installed with apt-get when missing and running as root); without it the
# script runs N shell busy loops. Either way it stops them when it ends.
# Each run's output is kept in a log directory printed at the start.
# Exits non-zero if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3 burners=$(( 2 * $(nproc) )) short=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--runs) runs="$2"; shift 2 ;;
	--burners) burners="$2"; shift 2 ;;
	--short) short=(--short); shift ;;
	-h|--help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/blobgc-stress-XXXXXX")
burner_pids=()
stop_burners() {
	for pid in "${burner_pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${burner_pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	burner_pids=()
}
trap stop_burners EXIT
trap 'exit 130' INT TERM

if ! command -v stress-ng >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
	apt-get install -y -qq stress-ng >/dev/null 2>&1 || true
fi
if command -v stress-ng >/dev/null; then
	stress-ng --cpu "$burners" --quiet &
	burner_pids+=($!)
	burner="stress-ng --cpu $burners"
else
	for _ in $(seq "$burners"); do
		sh -c 'while :; do :; done' &
		burner_pids+=($!)
	done
	burner="$burners busy loops"
fi

echo "burner: $burner on $(nproc) cores; logs in $logs"
failed=0
for i in $(seq "$runs"); do
	start=$(date +%s)
	if ./scripts/test.sh "${short[@]}" >"$logs/run-$i.log" 2>&1; then
		result=PASS
	else
		result=FAIL
		failed=$((failed + 1))
	fi
	took=$(( $(date +%s) - start ))
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	echo "run $i/$runs: $result in ${took}s, load average $load"
	if [[ $result == FAIL ]]; then
		# What failed (a run can also fail outside go test: its last lines).
		{ grep -E '^(--- FAIL|FAIL|panic:)|_test\.go:[0-9]+:' "$logs/run-$i.log" || tail -5 "$logs/run-$i.log"; } | head -20 | sed 's/^/    /'
	fi
done
echo "$((runs - failed)) of $runs runs passed"
[[ $failed == 0 ]]

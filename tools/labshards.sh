#!/usr/bin/env bash
# labshards.sh N RESULTS LOG -- GO-TEST-ARGS
#
# Runs the lab package's (./e2e) top-level tests in N processes at once, each
# under gotestsum with its own event log and JUnit XML (RESULTS/lab-e2e-I.json
# and .xml), and appends each shard's verbose output to LOG and stdout when it
# ends. Every lab object carries its process's id (internal/netlab), so
# shards cannot collide; the tests mostly wait (handshakes, timeouts, the API
# server), so two share the machine's cores. Tests are dealt longest first
# to the shard with the least work, by the times in tools/lab-durations.txt
# (a test not listed counts 30 s). With N = 1 the package runs whole, its
# output shown as it comes. Exit status: non-zero if any shard failed.
#
# Environment: GOTESTSUM, GO (default go).
set -uo pipefail
n=$1 results=$2 log=$3
shift 3
[ "${1:-}" = "--" ] && shift
here=$(cd "$(dirname "$0")" && pwd)
GO=${GO:-go}

if [ "$n" -le 1 ]; then # one shard: the whole package, its output as it comes
	cd "$here/.." && "$GOTESTSUM" --format standard-verbose --junitfile "$results/lab-e2e-1.xml" --jsonfile "$results/lab-e2e-1.json" \
		-- "$@" ./e2e/ 2>&1 | tee -a "$log"
	exit "${PIPESTATUS[0]}"
fi

tests=$(cd "$here/.." && $GO test -list '^Test' ./e2e/ | grep '^Test') || { echo "labshards: cannot list the lab tests" >&2; exit 1; }
# Longest first, then deal each to the lightest shard.
plan=$(for t in $tests; do
	d=$(awk -v t="$t" '$2 == t { print $1 }' "$here/lab-durations.txt")
	echo "${d:-30} $t"
done | sort -rn | awk -v n="$n" '
	{ best = 0; for (i = 1; i < n; i++) if (load[i] < load[best]) best = i
	  load[best] += $1; names[best] = names[best] (names[best] == "" ? "" : "|") $2 }
	END { for (i = 0; i < n; i++) printf "%d %s\n", load[i], names[i] }')

pids=() i=0
while read -r load names; do
	[ -n "$names" ] || continue
	i=$((i + 1))
	echo ">> lab shard $i: $(tr '|' '\n' <<<"$names" | wc -l) tests, about ${load} s by the last recorded times"
	(cd "$here/.." && "$GOTESTSUM" --format standard-verbose --junitfile "$results/lab-e2e-$i.xml" --jsonfile "$results/lab-e2e-$i.json" \
		-- "$@" -run "^($names)\$" ./e2e/ > "$results/lab-e2e-$i.log" 2>&1) &
	pids+=("$!")
done <<<"$plan"

status=0 i=0
for pid in "${pids[@]}"; do
	i=$((i + 1))
	wait "$pid" || status=1
	cat "$results/lab-e2e-$i.log" | tee -a "$log"
done
exit $status

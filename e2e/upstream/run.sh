#!/usr/bin/env bash
# run.sh runs the upstream Kubernetes e2e suite (e2e.test of the cluster's
# version) against the kind-weft context and writes the report under
# e2e/results/ (make e2e-upstream, and its CI subset in make test).
#
# Environment (the Makefile sets it): E2E_TEST, GINKGO, KUBECTL, REPORT (the
# weft-e2e-report binary), K8S_VERSION, E2E_FOCUS (a regex over spec names),
# E2E_SKIP (extra skip regex, optional), E2E_NODES (parallel ginkgo
# processes), E2E_OUT (the report's directory), E2E_TIMEOUT.
#
# Every spec weft does not run by default is in e2e/upstream/exclusions.txt with
# its reason; the skip expression is made from that list only (plus E2E_SKIP).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${E2E_TEST:?}" "${GINKGO:?}" "${KUBECTL:?}" "${REPORT:?}" "${K8S_VERSION:?}" "${E2E_FOCUS:?}"
context=kind-weft
out=${E2E_OUT:-$repo/e2e/results}
work=$(mktemp -d /tmp/weft-upstream.XXXXXX)
trap 'rm -rf "$work"' EXIT

log() { echo ">> $(date -u +%T) $*" >&2; }

"$KUBECTL" --context "$context" get nodes >/dev/null || { echo "run.sh: no cluster answers as $context (make kind-up)" >&2; exit 1; }
"$KUBECTL" config view --raw --minify --context "$context" >"$work/kubeconfig"

# The suite detects the schedulable nodes only in its first parallel process;
# the others would skip every spec that needs two nodes, so it is told.
nodes=$("$KUBECTL" --context "$context" get nodes -o jsonpath='{range .items[*]}{.spec.taints[*].effect}{"\n"}{end}' | grep -vc NoSchedule || true)

# The exclusion list, and E2E_SKIP as a second expression of its own (the
# report names it apart from the list).
skip=(--skip="$("$REPORT" skip "$here/exclusions.txt")")
[[ -z "${E2E_SKIP:-}" ]] || skip+=(--skip="$E2E_SKIP")

log "e2e.test $K8S_VERSION on $context ($nodes schedulable nodes), ${E2E_NODES:-2} parallel: focus '$E2E_FOCUS'"
log "expect about 20 min for the full run (134 specs in scope, dual-stack), 8 min for the CI subset; Ginkgo prints a mark per spec and a progress report for any spec running over 5 min"
rc=0
# --timeout bounds the whole run; each spec has the suite's own timeouts.
# GO111MODULE=off: the CLI asks `go list -m` in the binary's directory for the
# suite's Ginkgo version, and would find weft's go.mod there, not e2e.test's.
GO111MODULE=off "$GINKGO" --nodes="${E2E_NODES:-2}" --timeout="${E2E_TIMEOUT:-2h}" --no-color --silence-skips --poll-progress-after=5m \
	--focus="$E2E_FOCUS" "${skip[@]}" \
	--output-dir="$work" --json-report=report.json --junit-report=junit.xml \
	"$E2E_TEST" -- \
	--kubeconfig="$work/kubeconfig" --provider=skeleton --kubectl-path="$KUBECTL" --num-nodes="$nodes" \
	--report-dir="$work" --dump-logs-on-failure=false ||
	rc=$?
[[ -s "$work/report.json" ]] || { echo "run.sh: ginkgo wrote no report (exit $rc)" >&2; exit 1; }
"$REPORT" write --version "$K8S_VERSION" --exclusions "$here/exclusions.txt" --out "$out" "$work/report.json"
exit $rc

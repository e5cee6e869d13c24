#!/usr/bin/env bash
# run.sh runs network-policy-api's conformance suite (v0.3.0, the
# ClusterNetworkPolicy profile) against weft on the running kind-weft
# cluster and writes the suite's own report to e2e/results/ (make e2e-cnp).
#
# Environment (the Makefile sets it): CNP_CONFORMANCE (the suite, built with
# go test -c from tools/cnp-conformance), KUBECTL, KIND, AGNHOST (the agnhost
# image kind-up loaded), VERSION (weft's), CNP_OUT (the report's directory),
# CNP_FEATURES (experimental features to claim; empty: the standard profile),
# CNP_RUN (a subset: the tests' short names, |-separated; make test's
# e2e-cnp-ci runs one, with its report in CNP_OUT, not e2e/results/).
#
# Every test it skips is in e2e/cnp/exclusions.txt with its reason; the
# report lists them as skipped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${CNP_CONFORMANCE:?}" "${KUBECTL:?}" "${KIND:?}" "${AGNHOST:?}" "${VERSION:?}"
context=kind-weft
out=${CNP_OUT:-$repo/e2e/results}
work=$(mktemp -d /tmp/weft-cnp.XXXXXX)
trap 'rm -rf "$work"' EXIT
log() { echo ">> $(date -u +%T) $*" >&2; }
k() { "$KUBECTL" --context "$context" "$@"; }

k get nodes >/dev/null || { echo "run.sh: no cluster answers as $context (make kind-up)" >&2; exit 1; }
"$KUBECTL" config view --raw --minify --context "$context" >"$work/kubeconfig"

# The CRD: the chart's copy (standard channel), or the experimental channel
# when experimental features are claimed. The agents find it within a
# minute (they look again every minute) and say so.
crd=$repo/deploy/helm/weft/files/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml
if [[ -n "${CNP_FEATURES:-}" ]]; then
	crd=$(cd "$repo/tools/cnp-conformance" && go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)/config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml
fi
log "installing the ClusterNetworkPolicy CRD ($(basename "$(dirname "$crd")") channel)"
k apply --server-side --force-conflicts -f "$crd" >/dev/null
k wait --for condition=established --timeout=60s crd/clusternetworkpolicies.policy.networking.k8s.io >/dev/null
log "waiting for every weft agent to enforce it (each looks once a minute)"
deadline=$((SECONDS + 150))
for pod in $(k -n weft-system get pods -l app.kubernetes.io/name=weft -o name); do
	until k -n weft-system logs "$pod" | grep -q 'enforcing ClusterNetworkPolicy\|ClusterNetworkPolicy is served now'; do
		((SECONDS < deadline)) || { echo "run.sh: $pod does not enforce ClusterNetworkPolicy after 150 s" >&2; exit 1; }
		sleep 5
	done
done

# The suite's pods name agnhost 2.45 (pulled if not present): the agnhost
# kind-up built serves the same commands, tagged so.
want=registry.k8s.io/e2e-test-images/agnhost:2.45
if [[ "$AGNHOST" != "$want" ]]; then
	docker tag "$AGNHOST" "$want"
	WEFT_REAL_DOCKER=$(command -v docker) PATH="$repo/tools/kind/shim:$PATH" KIND_EXPERIMENTAL_DOCKER_NETWORK=weft-kind \
		"$KIND" load docker-image "$want" --name weft >/dev/null
fi

skip=$(grep -v '^#' "$here/exclusions.txt" | grep -v '^\s*$' | cut -d'|' -f1 | sed 's/[[:space:]]*$//' | paste -sd,)
run=TestConformanceProfiles
if [[ -n "${CNP_RUN:-}" ]]; then
	run="TestConformanceProfiles/^($CNP_RUN)\$"
	log "the ClusterNetworkPolicy profile, a subset: $CNP_RUN"
else
	log "the ClusterNetworkPolicy profile${CNP_FEATURES:+ with $CNP_FEATURES}; skipped: $skip (e2e/cnp/exclusions.txt); about 10 min"
fi
mkdir -p "$out"
rc=0
KUBECONFIG="$work/kubeconfig" "$CNP_CONFORMANCE" -test.run "$run" -skip-tests "$skip" -test.v -test.timeout 60m \
	-conformance-profiles ClusterNetworkPolicy ${CNP_FEATURES:+-supported-features "$CNP_FEATURES"} \
	-organization weftnet -project weft -url https://github.com/weftnet/weft -version "$VERSION" \
	-contact "https://github.com/weftnet/weft/issues" -additional-info "make e2e-cnp on kind (e2e/cnp/run.sh)" \
	-report-output "$work/report.yaml" >"$work/out.txt" 2>&1 || rc=$?
grep -E '^\s*--- (PASS|FAIL|SKIP)' "$work/out.txt" || true
[[ -s "$work/report.yaml" ]] || { tail -50 "$work/out.txt" >&2; echo "run.sh: the suite wrote no report (exit $rc)" >&2; exit 1; }
cp "$work/report.yaml" "$out/cnp-conformance-report.yaml"
cp "$work/out.txt" "$out/cnp-conformance.log"
top() { grep -cE "^\s*--- $1: TestConformanceProfiles/[A-Za-z]+ \(" "$work/out.txt" || true; }
if [[ -n "${CNP_RUN:-}" ]]; then
	echo "ClusterNetworkPolicy conformance (subset): $(top PASS) passed, $(top FAIL) failed (report: $out/cnp-conformance-report.yaml)"
	[[ "$(top PASS)" -gt 0 ]] || { echo "run.sh: no test of the subset ran: $CNP_RUN" >&2; exit 1; }
	exit $rc
fi
skipped=$(grep -v '^#' "$here/exclusions.txt" | grep -vc '^\s*$')
echo "ClusterNetworkPolicy conformance: $(($(top PASS) - skipped)) passed, $(top FAIL) failed, $skipped skipped, $(top SKIP) not claimed (report: $out/cnp-conformance-report.yaml)"
exit $rc

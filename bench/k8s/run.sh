#!/bin/sh
# Runs the bench's iperf3 pair between two nodes of the current kubectl
# context and prints the same table as `make bench` (throughput columns).
# usage: bench/k8s/run.sh SERVER_NODE CLIENT_NODE
# IPERF3_IMAGE names an image whose entrypoint is iperf3 and that has sh
# (default docker.io/networkstatic/iperf3:latest; make kind-up builds
# weft.local/iperf3:<version> from Debian's iperf3 where no registry is).
set -eu
img=${IPERF3_IMAGE:-docker.io/networkstatic/iperf3:latest}
[ $# -eq 2 ] || { echo "usage: $0 SERVER_NODE CLIENT_NODE" >&2; exit 2; }
here=$(dirname "$0")
out=$(mktemp)
trap 'kubectl delete namespace weft-bench --wait=false >/dev/null 2>&1 || true; rm -f "$out"' EXIT
sed -e "s/SERVER_NODE/$1/; s/CLIENT_NODE/$2/; s|IPERF3_IMAGE|$img|" "$here/iperf3.yaml" |
	awk 'function flush() { if (doc != "" && doc !~ /\nkind: Job\n/) printf "---\n%s", doc; doc = "" }
		/^---$/ { flush(); next } { doc = doc $0 "\n" } END { flush() }' | kubectl apply -f -
kubectl -n weft-bench wait --for=condition=Ready pod/iperf3-server --timeout=300s
ip=$(kubectl -n weft-bench get pod iperf3-server -o jsonpath='{.status.podIP}')
sed -e "s/SERVER_NODE/$1/; s/CLIENT_NODE/$2/; s/SERVER_IP/$ip/; s|IPERF3_IMAGE|$img|" "$here/iperf3.yaml" | kubectl apply -f -
# Wait for the client to succeed or fail (10 min at most); on failure both
# sides' logs are shown.
state=","
for _ in $(seq 300); do
	state=$(kubectl -n weft-bench get job iperf3-client -o jsonpath='{.status.succeeded},{.status.failed}')
	[ "$state" = "," ] || break
	sleep 2
done
kubectl -n weft-bench logs job/iperf3-client > "$out"
if [ "${state%%,*}" != 1 ]; then
	echo "the iperf3 client failed; its log (last 20 lines) and the server's:" >&2
	tail -20 "$out" >&2
	kubectl -n weft-bench logs pod/iperf3-server --tail=20 >&2 || true
	exit 1
fi
grep '^--- ' "$out" | sed 's/^--- /iperf3 run tried again: /' >&2 || true
"${WEFT_BENCH:-bin/weft-bench}" table --name "pod $2 -> pod $1" "$out"

#!/usr/bin/env bash
# cluster.sh brings kind cluster "weft" up or down (make kind-up, make kind-down).
#
#   cluster.sh up     1 control plane + 2 workers from $NODE_IMAGE, on a Docker
#                     network of its own that cannot reach beyond this machine;
#                     loads $LOAD_IMAGES; applies deploy/weft.yaml as shipped;
#                     waits until every node is Ready, the DaemonSet is fully
#                     available and CoreDNS runs
#   cluster.sh down   removes the cluster, its network and its firewall table
#   cluster.sh config the kind cluster configuration up uses (KIND_IP_FAMILY)
#
# Both are idempotent. A cluster already up is kept only if it answers, runs
# $NODE_IMAGE and has all nodes Ready; otherwise (a crashed run's leftovers) it
# is replaced. Environment (the Makefile sets it): KIND, KUBECTL, NODE_IMAGE,
# LOAD_IMAGES, KIND_IP_FAMILY (dual, the default: IPv4 and IPv6 pod and
# Service ranges; ipv4; ipv6).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
name=weft
network=weft-kind
bridge=weft-kind0
context=kind-$name
: "${KIND:?}" "${KUBECTL:?}"
family=${KIND_IP_FAMILY:-dual}

log() { echo ">> $(date -u +%T) $*" >&2; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
k() { "$KUBECTL" --context "$context" "$@"; }

# kind runs docker; on an engine that cannot grant every capability it runs it
# through the shim (see tools/kind/shim/docker).
kind() {
	WEFT_REAL_DOCKER=$(command -v docker) PATH="${shim:+$here/shim:}$PATH" KIND_EXPERIMENTAL_DOCKER_NETWORK=$network "$KIND" "$@"
}

detect_shim() {
	shim=""
	local out
	if ! out=$(docker run --rm --privileged --entrypoint true "$NODE_IMAGE" 2>&1); then
		case "$out" in
		*"unable to apply caps"*)
			log "this Docker engine cannot run --privileged (no CAP_SYS_RESOURCE here): kind runs through tools/kind/shim/docker"
			shim=1
			;;
		*) die "docker run --privileged failed: $out" ;;
		esac
	fi
}

# The cluster's network: IPv4 and IPv6, no masquerade, and an nftables table
# that drops anything forwarded between its bridge and any other interface.
# The host reaches the nodes (published API server port, NodePorts) and the
# nodes reach each other; nothing leaves the machine.
network_up() {
	if ! docker network inspect "$network" >/dev/null 2>&1; then
		log "docker network $network (bridge $bridge)"
		docker network create --driver bridge --ipv6 --subnet fc00:f853:ccd:e793::/64 \
			-o com.docker.network.bridge.name=$bridge \
			-o com.docker.network.bridge.enable_ip_masquerade=false \
			-o com.docker.network.driver.mtu=1500 "$network" >/dev/null
	fi
	nft -f - <<-EOF
		table inet weft-kind-isolation
		delete table inet weft-kind-isolation
		table inet weft-kind-isolation {
			chain forward {
				type filter hook forward priority -10; policy accept;
				iifname "$bridge" oifname != "$bridge" drop
				oifname "$bridge" iifname != "$bridge" drop
			}
		}
	EOF
}

network_down() {
	docker network rm "$network" >/dev/null 2>&1 || true
	nft delete table inet weft-kind-isolation 2>/dev/null || true
}

# config is deploy/kind/cluster.yaml (dual-stack) for $family: one family
# keeps that family's pod and Service ranges.
config() {
	local c=$repo/deploy/kind/cluster.yaml
	case "$family" in
	dual) cat "$c" ;;
	ipv4 | ipv6)
		local v=4
		[[ $family == ipv6 ]] && v=6
		awk -v fam="$family" -v v="$v" '
			function pick(line,   key, val, n, parts, i, out) {
				key = substr(line, 1, index(line, ":"))
				val = substr(line, index(line, "\"") + 1); sub(/".*/, "", val)
				n = split(val, parts, ",")
				for (i = 1; i <= n; i++) if ((v == 6) == (index(parts[i], ":") > 0)) out = parts[i]
				return key " \"" out "\""
			}
			/^  ipFamily:/ { print "  ipFamily: " fam; next }
			/^  (podSubnet|serviceSubnet):/ { print pick($0); next }
			{ print }' "$c"
		;;
	*) die "KIND_IP_FAMILY=$family: want dual, ipv4 or ipv6" ;;
	esac
}

# cluster_family is the family the running cluster was built for: the
# Service range(s) of the kubernetes Service.
cluster_family() {
	local fams
	fams=$(k get service kubernetes -o jsonpath='{.spec.ipFamilies[*]}' 2>/dev/null) || return 1
	case "$fams" in
	*IPv4*IPv6* | *IPv6*IPv4*) echo dual ;;
	IPv4) echo ipv4 ;;
	IPv6) echo ipv6 ;;
	*) return 1 ;;
	esac
}

exists() { "$KIND" get clusters 2>/dev/null | grep -qx "$name"; }

healthy() {
	local img
	img=$(docker inspect -f '{{.Config.Image}}' "$name-control-plane" 2>/dev/null) || return 1
	[[ "$img" == "$NODE_IMAGE" ]] || { log "cluster $name runs $img, not $NODE_IMAGE"; return 1; }
	[[ "$(docker ps -q --filter "label=io.x-k8s.kind.cluster=$name" | wc -l)" == 3 ]] || { log "cluster $name has not 3 running nodes"; return 1; }
	"$KIND" export kubeconfig --name "$name" >/dev/null 2>&1 || return 1
	k wait --for=condition=Ready nodes --all --timeout=60s >/dev/null 2>&1 || { log "cluster $name has nodes not Ready"; return 1; }
	local fam
	fam=$(cluster_family) || { log "cluster $name: cannot read its IP families"; return 1; }
	[[ "$fam" == "$family" ]] || { log "cluster $name is $fam, not $family"; return 1; }
}

# coredns_cluster_only drops the forward plugin from CoreDNS's Corefile:
# it answers the cluster's own names and nothing else, so no name a test
# resolves (the upstream suite's search-path retries included) is sent to the
# resolvers beyond this machine; other names fail at once (SERVFAIL).
coredns_cluster_only() {
	local corefile new
	corefile=$(k -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
	new=$(printf '%s\n' "$corefile" | awk '
		skip { if ($0 ~ /}/) skip = 0; next }
		$1 == "forward" { if ($0 ~ /{/ && $0 !~ /}/) skip = 1; next }
		{ print }')
	[[ "$new" != "$corefile" ]] || return 0
	log "CoreDNS: cluster names only (forward plugin removed)"
	k -n kube-system patch configmap coredns --type merge -p "$(jq -n --arg c "$new" '{data: {Corefile: $c}}')" >/dev/null
	k -n kube-system rollout restart deployment/coredns >/dev/null
}

up() {
	: "${NODE_IMAGE:?}"
	work=$(mktemp -d /tmp/weft-kind.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	local t0=$SECONDS
	sysctl -qw fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512
	detect_shim
	if exists && ! healthy; then
		log "replacing cluster $name (left by an earlier run)"
		kind delete cluster --name "$name" >/dev/null
	fi
	network_up
	local reused=""
	if ! exists; then
		log "kind create cluster $name ($family) from $NODE_IMAGE (about 1-2 min)"
		config >"$work/cluster.yaml"
		kind create cluster --name "$name" --image "$NODE_IMAGE" --config "$work/cluster.yaml" --wait 0s
	else
		log "cluster $name is up and healthy: reusing it"
		reused=1
	fi
	for img in ${LOAD_IMAGES:-}; do
		log "kind load docker-image $img"
		kind load docker-image "$img" --name "$name" >/dev/null
	done
	log "kubectl apply -f deploy/weft.yaml, then wait for weft, the nodes and CoreDNS (about 1 min)"
	k apply -f "$repo/deploy/weft.yaml" >/dev/null
	# A reused cluster runs the freshly loaded image.
	[[ -z "$reused" ]] || k -n weft-system rollout restart daemonset/weft >/dev/null
	k -n weft-system rollout status daemonset/weft --timeout=300s
	k wait --for=condition=Ready nodes --all --timeout=300s
	coredns_cluster_only
	k -n kube-system rollout status deployment/coredns --timeout=300s
	log "cluster $name is up in $((SECONDS - t0)) s: kubectl --context $context"
}

down() {
	if exists; then
		log "kind delete cluster $name"
		"$KIND" delete cluster --name "$name" >/dev/null
	fi
	# Nodes left by a run that died before kind knew them.
	docker ps -aq --filter "label=io.x-k8s.kind.cluster=$name" | xargs -r docker rm -f -v >/dev/null
	network_down
	# Nothing of the cluster may remain but the cached images.
	local left=""
	[[ -z "$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$name")" ]] || left="$left containers"
	! docker network inspect "$network" >/dev/null 2>&1 || left="$left network:$network"
	! nft list table inet weft-kind-isolation >/dev/null 2>&1 || left="$left nft-table"
	[[ -z "$left" ]] || die "kind-down left:$left"
	log "cluster $name is gone (containers, network $network, firewall table)"
}

case "${1:-}" in
up) up ;;
config) config ;;
down) down ;;
*) die "usage: cluster.sh up|down|config" ;;
esac

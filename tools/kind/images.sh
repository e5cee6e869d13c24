#!/usr/bin/env bash
# images.sh builds, with nothing but Debian's packages and the Go module proxy,
# every image weft's kind cluster needs, and caches each one in the local Docker
# engine under a tag made from a hash of its inputs: a rebuild happens only when
# an input changed. Nothing built here is committed.
#
#   images.sh bases   debian:bookworm-slim and golang:1.26-bookworm, the images
#                     the committed Dockerfile names (so `docker build .` works)
#   images.sh node    the kind node image (prints its tag on the last line)
#   images.sh agnhost registry.k8s.io/e2e-test-images/agnhost:$AGNHOST_VERSION
#   images.sh iperf3  weft.local/iperf3:<Debian's iperf3 version>
#   images.sh upstream  the upstream network specs' other images (jessie-dnsutils, nginx)
#
# node and agnhost run `make k8s` (in $MAKE) when their image is not cached.
#
# Environment (the Makefile sets it): K8S_VERSION, K8S_BIN (kubelet, kubeadm,
# kubectl, kube-* and etcd built from tools/controlplane), COREDNS_BIN,
# KIND_VERSION, AGNHOST_VERSION, ETCD_IMAGE_TAG, COREDNS_IMAGE_TAG, PAUSE_VERSION;
# DOCKER_BUILD_FLAGS (e.g. --cpu-shares 2) go to its docker build and run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/weft-images.XXXXXX)
container="" # the node image's preload container, removed on any exit
trap 'rm -rf "$work"; [ -z "$container" ] || docker rm -f "$container" >/dev/null 2>&1' EXIT

log() { echo ">> $(date -u +%T) $*" >&2; }
die() { echo "images.sh: $*" >&2; exit 1; }

# hash prints a short hash of its arguments: strings (a function's text from
# declare -f is its recipe), or files when they exist.
hash() {
	{
		for a in "$@"; do
			if [ -f "$a" ]; then sha256sum "$a" | cut -d' ' -f1; else echo "$a"; fi
		done
	} | sha256sum | cut -c1-16
}

have() { docker image inspect "$1" >/dev/null 2>&1; }

# prune REPO:TAG untags every other tag of REPO: the cache keeps one image per
# recipe, the newest (layers still used by another image stay).
prune() {
	docker images "${1%%:*}" --format '{{.Repository}}:{{.Tag}}' | grep -vxF "$1" | xargs -r docker rmi >/dev/null 2>&1 || true
}

# mirror reads the Debian mirror this machine's apt uses (never hard-coded).
mirror() {
	local m=""
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
		m=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
	fi
	[ -n "$m" ] || die "no Debian mirror configured in /etc/apt (sources.list or sources.list.d/debian.sources)"
	echo "$m"
}

# minbase: a Debian bookworm minbase root file system from debootstrap. It is
# also tagged debian:bookworm-slim, the runtime base the Dockerfile names.
MINBASE=""
minbase() {
	local tag
	tag="weft.local/debian-minbase:bookworm-$(hash "$(declare -f minbase)")"
	if ! have "$tag"; then
		command -v debootstrap >/dev/null || die "debootstrap is missing (make deps installs it)"
		log "debootstrap bookworm minbase (about 1.5 min; cached by its inputs afterwards)"
		local root="$work/minbase"
		debootstrap --variant=minbase bookworm "$root" "$(mirror)" >"$work/debootstrap.log" 2>&1 ||
			{ tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
		rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
		tar -C "$root" --numeric-owner -c . |
			docker import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >/dev/null
		rm -rf "$root"
		prune "$tag"
	fi
	docker tag "$tag" debian:bookworm-slim
	MINBASE=$tag
}

# build TAG DIR: docker build of a context directory, quietly, with the log
# shown on failure.
build() {
	log "docker build $1 (about 0.5-3 min; cached by its inputs afterwards)"
	docker build ${DOCKER_BUILD_FLAGS:-} --force-rm -q -t "$1" "$2" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; die "docker build $1 failed"; }
}

# golang: the Go toolchain this machine builds with, on the minbase, under the
# name the Dockerfile's build stage uses. It trusts the certificate authorities
# this machine added (/usr/local/share/ca-certificates), as its Go does: the
# build stage fetches modules from the same proxy.
golang_image() {
	local goroot gover tag
	goroot=$(go env GOROOT)
	gover=$(go env GOVERSION)
	case "$gover" in go1.26*) ;; *) die "the Dockerfile builds with golang:1.26-bookworm; this machine has $gover" ;; esac
	tag="weft.local/golang:$gover-$(hash "$(declare -f golang_image)" "$MINBASE" "$gover" /usr/local/share/ca-certificates/*.crt)"
	if ! have "$tag"; then
		local ctx="$work/golang"
		mkdir -p "$ctx"
		cp -a "$goroot" "$ctx/go"
		mkdir -p "$ctx/ca"
		cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
		cat >"$ctx/Dockerfile" <<-EOF
			FROM $MINBASE
			RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git \\
			 && rm -rf /var/lib/apt/lists/*
			COPY ca/ /usr/local/share/ca-certificates/
			RUN update-ca-certificates >/dev/null
			COPY go /usr/local/go
			ENV GOLANG_VERSION=${gover#go} GOTOOLCHAIN=local GOPATH=/go \\
			    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
			WORKDIR /go
		EOF
		build "$tag" "$ctx"
		rm -rf "$ctx"
		prune "$tag"
	fi
	docker tag "$tag" golang:1.26-bookworm
}

# moddir MODULE@VERSION: the module's directory in the module cache, resolved
# in tools/controlplane (which pins kind and kubernetes).
moddir() {
	(cd "$repo/tools/controlplane" && go mod download -json "$1" | jq -r .Dir)
}

kindfiles() {
	local d
	d=$(moddir "sigs.k8s.io/kind@$KIND_VERSION")
	[ -d "$d/images/base/files" ] || die "kind $KIND_VERSION has no images/base/files in the module cache"
	echo "$d/images/base/files"
}

# nodebase: kind's base image, as kind's own images/base/Dockerfile makes it,
# from Debian bookworm's systemd, containerd and runc and kind's node files
# read from the kind module at build time. One change: reverse-path filtering
# is loose (kind sets it strict), which weft needs on every host (README).
NODEBASE=""
nodebase() {
	local files tag
	files=$(kindfiles)
	tag="weft.local/kind-base:bookworm-$(hash "$(declare -f nodebase)" "$MINBASE" "$KIND_VERSION" "$PAUSE_VERSION" "$here/node/entrypoint")"
	if ! have "$tag"; then
		local ctx="$work/nodebase"
		mkdir -p "$ctx"
		cp -a "$files" "$ctx/files"
		cp "$here/node/entrypoint" "$ctx/weft-node-entrypoint"
		chmod -R u+w "$ctx/files"
		sed -i "s|sandbox_image = .*|sandbox_image = \"registry.k8s.io/pause:$PAUSE_VERSION\"|" "$ctx/files/etc/containerd/config.toml"
		# Debian installs containerd in /usr/bin.
		sed -i 's|ExecStart=/usr/local/bin/containerd|ExecStart=/usr/bin/containerd|' "$ctx/files/etc/systemd/system/containerd.service"
		cat >"$ctx/Dockerfile" <<-EOF
			FROM $MINBASE
			COPY files/usr/local/bin/ /usr/local/bin/
			COPY files/kind/ /kind/
			COPY files/etc/ /etc/
			RUN chmod 0755 /usr/local/bin/* /kind/bin /kind/bin/* \\
			 && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \\
			      systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount kmod \\
			      libseccomp2 pigz fuse-overlayfs bash ca-certificates curl jq procps containerd runc \\
			 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
			 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
			 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
			      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
			      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
			 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
			 && ln -sf /usr/lib/systemd/systemd /sbin/init \\
			 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
			 && systemctl mask systemd-binfmt.service \\
			 && mkdir -p /etc/kubernetes/manifests /opt/cni/bin \\
			 && printf 'net.ipv4.conf.all.rp_filter=2\\nnet.ipv4.conf.default.rp_filter=2\\n' > /etc/sysctl.d/99-weft-rp-filter.conf \\
			 && ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
			      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
			COPY weft-node-entrypoint /usr/local/bin/weft-node-entrypoint
			ENV container=docker
			STOPSIGNAL SIGRTMIN+3
			ENTRYPOINT ["/usr/local/bin/weft-node-entrypoint", "/sbin/init"]
		EOF
		build "$tag" "$ctx"
		rm -rf "$ctx"
		prune "$tag"
	fi
	NODEBASE=$tag
}

# static IMAGE BIN [ENTRYPOINT]: an image of one static binary on an empty root
# (kubeadm's static pods name the command, so the binary is on PATH).
static() {
	local img=$1 bin=$2 ep=${3:-} ctx="$work/static"
	rm -rf "$ctx" && mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/etc" "$ctx/root/tmp" "$ctx/root/var/run"
	chmod 1777 "$ctx/root/tmp"
	cp "$bin" "$ctx/root/usr/local/bin/"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$ctx/root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/root/etc/group"
	echo 'hosts: files dns' >"$ctx/root/etc/nsswitch.conf"
	{
		echo 'FROM scratch'
		echo 'COPY root/ /'
		echo 'ENV PATH=/usr/local/bin:/usr/bin:/bin'
		[ -z "$ep" ] || echo "ENTRYPOINT [\"$ep\"]"
	} >"$ctx/Dockerfile"
	build "$img" "$ctx"
}

# controlplane_images: what kubeadm $K8S_VERSION pulls, under the names and
# tags it uses (the kind config pins etcd's and CoreDNS's tags to these).
controlplane_images() {
	local b
	for b in kube-apiserver kube-controller-manager kube-scheduler; do
		static "registry.k8s.io/$b:$K8S_VERSION" "$K8S_BIN/$b"
	done
	static "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "$K8S_BIN/etcd"
	static "registry.k8s.io/coredns/coredns:$COREDNS_IMAGE_TAG" "$COREDNS_BIN" /usr/local/bin/coredns
	local ctx="$work/pause"
	mkdir -p "$ctx/root"
	local pausec
	pausec="$(moddir "k8s.io/kubernetes@$K8S_VERSION")/build/pause/linux/pause.c"
	gcc -Os -Wall -Werror -static -DVERSION="$PAUSE_VERSION" -o "$ctx/root/pause" "$pausec"
	printf 'FROM scratch\nCOPY root/ /\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
	build "registry.k8s.io/pause:$PAUSE_VERSION" "$ctx"
	# kube-proxy programs nftables (and iptables for its canaries) and conntrack.
	ctx="$work/kube-proxy"
	mkdir -p "$ctx"
	cp "$K8S_BIN/kube-proxy" "$ctx/"
	cat >"$ctx/Dockerfile" <<-EOF
		FROM $MINBASE
		RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \\
		      iptables nftables conntrack iproute2 kmod \\
		 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
		COPY kube-proxy /usr/local/bin/kube-proxy
	EOF
	build "registry.k8s.io/kube-proxy:$K8S_VERSION" "$ctx"
}

# node: the kind node image: the base, the Kubernetes binaries, /kind/version,
# and the control-plane images preloaded into the node's containerd.
node() {
	local tag
	tag="weft.local/kind-node:$K8S_VERSION-$(hash "$(declare -f node controlplane_images static)" "$NODEBASE" "$K8S_VERSION" "$ETCD_IMAGE_TAG" "$COREDNS_IMAGE_TAG" \
		"$repo/tools/controlplane/go.sum" "$repo/tools/controlplane/go.mod" "$(go env GOVERSION)")"
	if have "$tag"; then
		echo "$tag"
		return
	fi
	log "building Kubernetes $K8S_VERSION (make k8s: about 30-40 min cold on 2 cores, the longest stage; cached afterwards)"
	${MAKE:-make} -C "$repo" --no-print-directory k8s >&2
	for b in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd; do
		[ -x "$K8S_BIN/$b" ] || die "$K8S_BIN/$b is missing (make k8s builds it)"
	done
	[ -x "$COREDNS_BIN" ] || die "$COREDNS_BIN is missing (make controlplane builds it)"
	"$K8S_BIN/kubeadm" version -o short | grep -qx "$K8S_VERSION" || die "kubeadm is not $K8S_VERSION"
	controlplane_images
	local want
	want=$("$K8S_BIN/kubeadm" config images list \
		--config <(printf 'apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: %s\netcd: {local: {imageTag: %s}}\ndns: {imageTag: %s}\n' \
			"$K8S_VERSION" "$ETCD_IMAGE_TAG" "$COREDNS_IMAGE_TAG") 2>/dev/null) ||
		die "kubeadm config images list failed"
	for i in $want; do have "$i" || die "kubeadm wants $i, which was not built"; done
	log "preloading $(echo "$want" | wc -w) images into the node's containerd"
	docker save $want >"$work/images.tar"
	local c
	c=$(docker run ${DOCKER_BUILD_FLAGS:-} -d --entrypoint sleep -v "$work:/preload:ro" "$NODEBASE" infinity)
	container=$c
	docker cp "$K8S_BIN/kubeadm" "$c:/usr/bin/kubeadm"
	docker cp "$K8S_BIN/kubelet" "$c:/usr/bin/kubelet"
	docker cp "$K8S_BIN/kubectl" "$c:/usr/bin/kubectl"
	docker exec "$c" sh -c "echo $K8S_VERSION > /kind/version"
	docker exec "$c" sh -c '
		set -e
		containerd >/tmp/containerd.log 2>&1 &
		pid=$!
		for i in $(seq 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
		ctr -n k8s.io images import --no-unpack /preload/images.tar >/dev/null || { cat /tmp/containerd.log >&2; exit 1; }
		ctr -n k8s.io images ls -q
		kill $pid && wait $pid || true
		rm -f /tmp/containerd.log' >"$work/preloaded" || die "preloading images failed"
	for i in $want; do grep -qx "$i" "$work/preloaded" || die "$i is not in the node's containerd"; done
	docker commit \
		-c 'ENTRYPOINT ["/usr/local/bin/weft-node-entrypoint", "/sbin/init"]' -c 'CMD []' \
		"$c" "$tag" >/dev/null
	prune "$tag"
	# The control-plane images live on in the node image; their tags here were
	# only the preload's input.
	docker rmi $want >/dev/null
	echo "$tag"
}

# iperf 2.2.1, the source of Debian trixie's package (its Sources index gives
# the hash); the agnhost image builds it.
IPERF2_TARBALL=iperf_2.2.1+dfsg.orig.tar.xz
IPERF2_SHA256=9cbbcb3c8489913871ad1855199a6c03e5d402837c9210b7baf7997aa064cd2c

# agnhost: the e2e suite's test image, built from k8s.io/kubernetes/test/images/agnhost
# on Debian instead of Alpine, with the tools its Dockerfile installs.
agnhost() {
	local tag="registry.k8s.io/e2e-test-images/agnhost:$AGNHOST_VERSION"
	local cached
	cached="weft.local/agnhost:$AGNHOST_VERSION-$(hash "$(declare -f agnhost)" "$MINBASE" "$IPERF2_SHA256" "$K8S_VERSION" "$repo/tools/controlplane/go.sum" "$(go env GOVERSION)")"
	if ! have "$cached"; then
		${MAKE:-make} -C "$repo" --no-print-directory k8s >&2
		[ -x "$K8S_BIN/agnhost" ] || die "$K8S_BIN/agnhost is missing (make k8s builds it)"
		local src ctx="$work/agnhost"
		src="$(moddir "k8s.io/kubernetes@$K8S_VERSION")/test/images/agnhost"
		grep -qx "$AGNHOST_VERSION" "$src/VERSION" || die "k8s.io/kubernetes@$K8S_VERSION has agnhost $(cat "$src/VERSION"), not $AGNHOST_VERSION"
		mkdir -p "$ctx"
		cp "$K8S_BIN/agnhost" "$COREDNS_BIN" "$src/porter/localhost.crt" "$src/porter/localhost.key" "$ctx/"
		# iperf 2 is built from Debian trixie's source (2.2.1, as Alpine's in
		# upstream's image): the suite's iperf2 spec reads the CSV of iperf
		# >= 2.2, and bookworm ships 2.1.8. The mirror serves the tarball by
		# its pool path; its hash is pinned above. The DFSG tarball lacks the
		# Windows-only src/service.c its Makefile still lists: an empty one.
		cat >"$ctx/Dockerfile" <<-EOF
			FROM $MINBASE AS iperf2
			RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl xz-utils gcc g++ make \\
			 && mkdir /src && cd /src && curl -fsS -o iperf.tar.xz "$(mirror)/pool/main/i/iperf/$IPERF2_TARBALL" \\
			 && echo "$IPERF2_SHA256  iperf.tar.xz" | sha256sum -c - && tar -xJf iperf.tar.xz && cd iperf-* \\
			 && touch src/service.c \\
			 && ./configure --prefix=/usr/local >/dev/null && make -j2 >/dev/null && make install >/dev/null
			FROM $MINBASE
			RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \\
			      bind9-dnsutils curl netcat-openbsd iproute2 iperf3 bash passwd \\
			 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
			 && groupadd -g 50000 group-defined-in-image \\
			 && useradd -u 1000 -G group-defined-in-image user-defined-in-image \\
			 && mkdir /uploads
			COPY coredns /coredns
			COPY localhost.crt localhost.key /
			COPY --from=iperf2 /usr/local/bin/iperf /usr/local/bin/iperf
			COPY agnhost /agnhost
			RUN ln -s agnhost /agnhost-2
			EXPOSE 80 8080 8081 9376 5000
			ENTRYPOINT ["/agnhost"]
			CMD ["pause"]
		EOF
		build "$cached" "$ctx"
		prune "$cached"
	fi
	docker tag "$cached" "$tag"
	echo "$tag"
}

# iperf3: Debian's iperf3 for the bench pair on a cluster (bench/k8s), tagged
# with its version (a :latest tag would make the kubelet try to pull it).
iperf3_image() {
	local cached="weft.local/iperf3:bookworm-$(hash "$(declare -f iperf3_image)" "$MINBASE")"
	if ! have "$cached"; then
		local ctx="$work/iperf3"
		mkdir -p "$ctx"
		cat >"$ctx/Dockerfile" <<-EOF
			FROM $MINBASE
			RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3 \\
			 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
			USER nobody
			ENTRYPOINT ["iperf3"]
		EOF
		build "$cached" "$ctx"
		prune "$cached"
	fi
	local v
	v=$(docker run --rm --entrypoint sh "$cached" -c "dpkg-query -W -f '\${Version}' iperf3" | cut -d- -f1)
	docker tag "$cached" "weft.local/iperf3:$v"
	echo "weft.local/iperf3:$v"
}

# upstream_images: the other images the upstream network specs run (make
# e2e-upstream), under the names and tags e2e.test $K8S_VERSION expects, from
# Debian's packages: jessie-dnsutils (the DNS specs' second querier: sh, dig,
# getent) and nginx (an HTTP server on port 80, for the EndpointSlice specs).
upstream_images() {
	local name pkgs cmd cached ctx
	for name in jessie-dnsutils:1.7 nginx:1.14-4; do
		case "$name" in
		jessie-dnsutils:*) pkgs="bind9-dnsutils" cmd='["sh"]' ;;
		nginx:*) pkgs="nginx-light" cmd='["nginx", "-g", "daemon off;"]' ;;
		esac
		cached="weft.local/${name%%:*}:${name#*:}-$(hash "$(declare -f upstream_images)" "$MINBASE")"
		if ! have "$cached"; then
			ctx="$work/${name%%:*}"
			mkdir -p "$ctx"
			cat >"$ctx/Dockerfile" <<-EOF
				FROM $MINBASE
				RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs \\
				 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
				CMD $cmd
			EOF
			build "$cached" "$ctx"
			prune "$cached"
		fi
		docker tag "$cached" "registry.k8s.io/e2e-test-images/$name"
		echo "registry.k8s.io/e2e-test-images/$name"
	done
}

command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "needs a running Docker engine"
case "${1:-}" in
bases)
	minbase
	golang_image
	;;
node)
	minbase
	nodebase
	node
	;;
agnhost)
	minbase
	agnhost
	;;
iperf3)
	minbase
	iperf3_image
	;;
upstream)
	minbase
	upstream_images
	;;
*) die "usage: images.sh bases|node|agnhost|iperf3|upstream" ;;
esac

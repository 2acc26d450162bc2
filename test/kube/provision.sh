#!/usr/bin/env bash
# provision.sh prepares this machine for the Kubernetes end-to-end tests
# (test/kubeenv): etcd from Debian's etcd-server package, iproute2 for the pod
# network namespace, and kube-apiserver + kube-controller-manager built from
# the k8s.io/kubernetes module pinned in test/tools into a cache directory.
#
# It is idempotent: each step runs only when its result is missing, so a
# second run is quick. It never fails the caller: when it cannot provision
# (not root, no apt, no Go, a failed build) it says why and exits 0, and the
# Kubernetes tests then skip with the same advice.
#
#   SHARD_PROXY_KUBE_CACHE  where the binaries go
#                           (default $HOME/.cache/shard-proxy/kube-v1.36.3)
set -u

KUBE_VERSION=v1.36.3
CACHE="${SHARD_PROXY_KUBE_CACHE:-$HOME/.cache/shard-proxy/kube-$KUBE_VERSION}"
TOOLS="$(cd "$(dirname "$0")/../tools" && pwd)"
BINARIES="kube-apiserver kube-controller-manager"

say() { echo "provision: $*"; }
give_up() {
	say "$*"
	say "Kubernetes tests will be skipped; fix the above and rerun: bash test/kube/provision.sh"
	exit 0
}

[ "$(id -u)" = 0 ] || give_up "not root: installing packages and creating network namespaces needs root"

apt_updated=
apt_install() {
	command -v apt-get >/dev/null || give_up "apt-get not found; install $* by hand"
	if [ -z "$apt_updated" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq || give_up "apt-get update failed"
		apt_updated=1
	fi
	say "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		give_up "apt-get install $* failed"
}

if command -v etcd >/dev/null || [ -x /usr/bin/etcd ]; then
	say "etcd present: $(command -v etcd || echo /usr/bin/etcd)"
else
	apt_install etcd-server
	# The package starts a system etcd on the default ports; the tests run their
	# own on random ports and do not need it.
	if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
		systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
fi

if command -v ip >/dev/null; then
	say "iproute2 present"
else
	apt_install iproute2
fi

missing=
for b in $BINARIES; do
	[ -x "$CACHE/$b" ] || missing="$missing $b"
done
if [ -z "$missing" ]; then
	say "binaries present in $CACHE"
	exit 0
fi

command -v go >/dev/null || give_up "go not found on PATH; it is needed to build$missing"
mkdir -p "$CACHE" || give_up "cannot create $CACHE"

# Two test runs may provision at once; one builds, the other waits for it.
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null; then
	flock 9
fi
missing=
for b in $BINARIES; do
	[ -x "$CACHE/$b" ] || missing="$missing $b"
done
[ -n "$missing" ] || { say "binaries present in $CACHE (built by another run)"; exit 0; }

pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=36 -X $pkg.gitTreeState=clean"
tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
say "building$missing $KUBE_VERSION into $CACHE (slow: about 10-20 minutes on 2 cores)"
start=$(date +%s)
for b in $missing; do
	(cd "$TOOLS" && go build -trimpath -ldflags "$ldflags" -o "$tmp/$b" "k8s.io/kubernetes/cmd/$b") ||
		give_up "building $b failed"
	# Rename into place so a half-written binary is never found.
	mv "$tmp/$b" "$CACHE/$b" || give_up "cannot move $b into $CACHE"
	say "built $b in $(( $(date +%s) - start ))s"
done
say "done in $(( $(date +%s) - start ))s"

#!/usr/bin/env bash
# provision.sh installs promtool (Debian's prometheus package) for the
# monitoring tests (test/monitoring), which check deploy/monitoring's
# PrometheusRule with `promtool check rules`.
#
# It is idempotent: it does nothing when promtool is already on PATH. It
# never fails the caller: when it cannot install (not root, no apt, a failed
# install) it says why and exits 0, and the promtool test then skips with the
# same advice.
set -u

say() { echo "provision: $*"; }
give_up() {
	say "$*"
	say "the promtool check will be skipped; fix the above and rerun: bash test/monitoring/provision.sh"
	exit 0
}

if command -v promtool >/dev/null; then
	say "promtool present: $(command -v promtool)"
	exit 0
fi

[ "$(id -u)" = 0 ] || give_up "not root: installing the prometheus package needs root"
command -v apt-get >/dev/null || give_up "apt-get not found; install promtool by hand"

DEBIAN_FRONTEND=noninteractive apt-get update -qq || give_up "apt-get update failed"
say "installing prometheus (for promtool)"
# policy-rc.d keeps the package from starting a Prometheus server on :9090:
# only promtool is wanted. Left alone when one exists already.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
status=$?
[ -z "$own_policy" ] || rm -f "$policy"
[ "$status" = 0 ] || give_up "apt-get install prometheus failed"
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
	systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null || give_up "the prometheus package installed no promtool on PATH"
say "promtool installed: $(command -v promtool)"

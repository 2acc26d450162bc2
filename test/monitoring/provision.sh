#!/usr/bin/env bash
# provision.sh installs promtool (Debian's prometheus package) for the
# monitoring tests (test/monitoring), which check deploy/monitoring's
# PrometheusRule and dashboard with promtool. Idempotent.
set -u
WHAT=promtool RERUN=test/monitoring/provision.sh
. "$(dirname "$0")/../apt.sh"
command -v promtool >/dev/null && have_or_install # says so and exits
# policy-rc.d keeps the package from starting a Prometheus server on :9090:
# only promtool is wanted. Left alone when one exists already.
policy=/usr/sbin/policy-rc.d
if [ "$(id -u)" = 0 ] && [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && trap 'rm -f "$policy"' EXIT
fi
have_or_install prometheus
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
	systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null || give_up "the prometheus package installed no promtool on PATH"
say "promtool installed: $(command -v promtool)"

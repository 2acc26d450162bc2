#!/usr/bin/env bash
# provision.sh installs Debian's chromium for the status page's browser
# test (cmd/shard-proxy TestStatusPageInBrowser), which loads the admin
# page in headless Chromium and checks the rendered DOM.
#
# It is idempotent: it does nothing when chromium is on PATH. It never fails
# the caller: when it cannot install (not root, no apt, a failed install) it
# says why and exits 0, and the browser test then skips with the same advice.
set -u

say() { echo "provision: $*"; }
give_up() {
	say "$*"
	say "the browser test will be skipped; fix the above and rerun: bash test/browser/provision.sh"
	exit 0
}

if command -v chromium >/dev/null; then
	say "chromium present: $(command -v chromium)"
	exit 0
fi
[ "$(id -u)" = 0 ] || give_up "not root: installing chromium needs root"
command -v apt-get >/dev/null || give_up "apt-get not found; install chromium by hand"
DEBIAN_FRONTEND=noninteractive apt-get update -qq || give_up "apt-get update failed"
say "installing chromium (headless, for the status page test)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null ||
	give_up "apt-get install chromium failed"
say "chromium installed: $(command -v chromium)"

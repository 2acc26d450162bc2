#!/usr/bin/env bash
# provision.sh installs Debian's chromium for the status page's browser
# test (cmd/shard-proxy TestStatusPageInBrowser), which loads the admin
# page in headless Chromium and checks the rendered DOM. Idempotent.
set -u
WHAT=chromium RERUN=test/browser/provision.sh
. "$(dirname "$0")/../apt.sh"
have_or_install chromium fonts-dejavu-core
command -v chromium >/dev/null || give_up "the chromium package installed no chromium on PATH"
say "chromium installed: $(command -v chromium)"

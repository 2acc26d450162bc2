# apt.sh: what the optional-tool provisioning scripts (test/monitoring,
# test/browser) share. Source it with WHAT set to the command the tests
# need and RERUN to the script to rerun; then call have_or_install.
#
# The scripts never fail their caller: when they cannot install (not root,
# no apt, a failed install) they say why and exit 0, and the tests that need
# the tool skip with the same advice.

say() { echo "provision: $*"; }

give_up() {
	say "$*"
	say "the tests that need $WHAT will be skipped; fix the above and rerun: bash $RERUN"
	exit 0
}

# have_or_install PACKAGE...: exits 0 at once when $WHAT is on PATH;
# otherwise installs the packages with apt-get (as root), run by the
# caller's optional before_install and after_install hooks.
have_or_install() {
	if command -v "$WHAT" >/dev/null; then
		say "$WHAT present: $(command -v "$WHAT")"
		exit 0
	fi
	[ "$(id -u)" = 0 ] || give_up "not root: installing $* needs root"
	command -v apt-get >/dev/null || give_up "apt-get not found; install $WHAT by hand"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq || give_up "apt-get update failed"
	say "installing $* (for $WHAT)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		give_up "apt-get install $* failed"
}

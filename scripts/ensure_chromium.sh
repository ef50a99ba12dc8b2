#!/usr/bin/env bash
# Best effort: leave Debian's Chromium (and its driver) installed, so the control page's
# browser test runs instead of being skipped. Never fails: without Chromium the test skips
# and says why. Always exits 0 and ends with one line that says what happened.
#
# - /usr/bin/chromium present: nothing to do;
# - otherwise, as root with apt-get: install chromium and chromium-driver (log in
#   $HUTCH_CHROMIUM_LOG).
set -uo pipefail

CHROMIUM=/usr/bin/chromium
LOG=${HUTCH_CHROMIUM_LOG:-${TMPDIR:-/tmp}/hutch-chromium.log}
START=$(date +%s)

finish() {
    printf 'ensure_chromium: %s (%ss)\n' "$1" "$(($(date +%s) - START))"
    exit 0
}

if [[ -x $CHROMIUM ]]; then
    finish "chromium present"
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    finish "no $CHROMIUM and no root apt-get to install it: the browser test will be skipped"
fi
printf 'ensure_chromium: installing chromium and chromium-driver (log: %s)\n' "$LOG"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
    >>"$LOG" 2>&1; then
    finish "could not install chromium (see $LOG): the browser test will be skipped"
fi
if [[ -x $CHROMIUM ]]; then
    finish "chromium installed"
fi
finish "apt-get installed chromium but $CHROMIUM is missing: the browser test will be skipped"

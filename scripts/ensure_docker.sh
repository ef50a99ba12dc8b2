#!/usr/bin/env bash
# Best effort: leave a reachable Docker engine and an up-to-date agent image behind, so the
# Docker tests run instead of being skipped. Never fails: whatever goes wrong, the tests
# still run and the Docker ones skip with a reason. Always exits 0 and ends with one line
# that says what happened.
#
# - engine reachable (`docker info`): use it;
# - otherwise, as root: install docker.io if missing, start `dockerd` in the background
#   (logs in $HUTCH_DOCKERD_LOG), wait up to 30 s for it;
# - then scripts/build_image.sh, which does nothing when the image is up to date.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERD_LOG=${HUTCH_DOCKERD_LOG:-${TMPDIR:-/tmp}/hutch-dockerd.log}
ENGINE_WAIT_S=30

START=$(date +%s)
STEP=$START
TIMINGS=()

say() { printf 'ensure_docker: %s\n' "$*"; }
mark() {
    local now
    now=$(date +%s)
    TIMINGS+=("$1 $((now - STEP))s")
    STEP=$now
}
finish() {
    local detail=""
    if ((${#TIMINGS[@]})); then
        detail=$(printf '%s, ' "${TIMINGS[@]}")
        detail=": ${detail%, }"
    fi
    say "$1 (total $(($(date +%s) - START))s$detail)"
    exit 0
}

# Bounded: a socket whose engine hangs must not hang `make test`.
engine_up() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

start_engine() {
    if [[ $(id -u) -ne 0 ]]; then
        finish "no Docker engine reachable and not root: Docker tests will be skipped"
    fi
    if ! command -v dockerd >/dev/null; then
        say "installing docker.io"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } \
            >>"$DOCKERD_LOG" 2>&1; then
            finish "could not install docker.io (see $DOCKERD_LOG): Docker tests will be skipped"
        fi
        mark "install"
    fi
    # A dockerd killed without clean-up leaves its pid file, and a new one refuses to start.
    local pidfile=/var/run/docker.pid
    if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        rm -f "$pidfile"
    fi
    if [[ ! -f $pidfile ]]; then
        say "starting dockerd (log: $DOCKERD_LOG)"
        # No bridge and no iptables: agent containers run with network_mode=none, and this
        # may itself run in a container where neither is allowed. setsid: the engine must
        # outlive `make`, whose process group ends with it.
        setsid nohup dockerd --bridge=none --iptables=false >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    local waited=0
    until engine_up; do
        if ((waited >= ENGINE_WAIT_S)); then
            finish "dockerd did not answer within ${ENGINE_WAIT_S}s (see $DOCKERD_LOG): Docker tests will be skipped"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    mark "engine"
}

if engine_up; then
    mark "engine"
else
    start_engine
fi

if ! "$REPO/scripts/build_image.sh" 2>&1; then
    mark "image"
    finish "engine up, but building the agent image failed: Docker tests will be skipped"
fi
mark "image"
finish "Docker engine up, image hutch-agent:latest ready: Docker tests will run"

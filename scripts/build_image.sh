#!/usr/bin/env bash
# Build the agent image `hutch-agent:<version>` (also tagged `hutch-agent:latest`) without
# any container registry: the base is a Debian rootfs made with debootstrap and imported,
# the Python dependencies are wheels built on this host, and `docker build` runs with
# `--network none`.
#
# Four steps, each printed with its time: the engine, the base image, the wheels, the agent
# image (its Dockerfile steps each with their own time when it is built).
#
# Idempotent: the base image, the debootstrap tarball and the wheels are reused when they
# exist (delete them, or the cache folder, to force a rebuild), and the agent image is
# rebuilt only when its sources, the Dockerfile or the pinned requirements changed (the
# `hutch.source` label, computed by actors/runtime/image.py, the same hash the host checks):
# a run with nothing to do takes a second or two.
#
# --for-run (what `make run` uses): best effort before the host starts. It never fails and
# never installs or starts an engine: without one it says, in one line, that agents will run
# as processes, unisolated, and why; with HUTCH_RUNTIME=process it builds nothing.
#
# Settings (environment):
#   HUTCH_IMAGE_CACHE   cache folder (default: <repo>/.cache/hutch-image)
#   HUTCH_DEBIAN_MIRROR Debian mirror for debootstrap (default: http://deb.debian.org/debian)
#   PYTHON              interpreter that builds the wheels (default: <repo>/.venv/bin/python)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HUTCH_IMAGE_CACHE:-$REPO/.cache/hutch-image}
MIRROR=${HUTCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=hutch-base:bookworm
IMAGE=hutch-agent
# What the base must hold for the runner: Python with venv (ensurepip gives the image its
# pip offline), CA certificates, and zoneinfo data for TZ.
BASE_PACKAGES=python3,python3-venv,ca-certificates,tzdata
# The wheels must match the image's interpreter: bookworm ships CPython 3.11.
IMAGE_PYTHON=3.11
ENDPOINT=${DOCKER_HOST:-unix:///var/run/docker.sock}
UNISOLATED="agents run as processes, unisolated"

FOR_RUN=0
case ${1:-} in
    --for-run) FOR_RUN=1 ;;
    "") ;;
    *) printf 'usage: %s [--for-run]\n' "$0" >&2; exit 2 ;;
esac

if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

# Temporary folders, removed on any exit: a half-made rootfs must never be cached as a good one.
TEMPS=()
cleanup() { if ((${#TEMPS[@]})); then rm -rf "${TEMPS[@]}"; fi; }
trap cleanup EXIT

# -- progress: "[2/4] base image hutch-base:bookworm ... 0.1 s (cached)" ---------------------
STEPS=4
STEP_NO=0
STEP_NAME=
STEP_START=0
STEP_OPEN=0 # the step's line still waits for its time
START=${EPOCHREALTIME/[.,]/}

now_us() { echo "${EPOCHREALTIME/[.,]/}"; }
seconds_since() {
    local us=$(($(now_us) - $1))
    printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}
close_line() { if ((STEP_OPEN)); then printf '\n' >&2; STEP_OPEN=0; fi; }
say() { close_line; printf 'build_image: %s\n' "$*" >&2; }
note() { close_line; printf '      %s\n' "$*" >&2; }
step() {
    STEP_NO=$((STEP_NO + 1))
    STEP_NAME=$1
    STEP_START=$(now_us)
    printf '[%d/%d] %s ... ' "$STEP_NO" "$STEPS" "$STEP_NAME" >&2
    STEP_OPEN=1
}
step_done() {
    local took
    took=$(seconds_since "$STEP_START")
    if ((STEP_OPEN)); then
        printf '%s s (%s)\n' "$took" "$1" >&2
        STEP_OPEN=0
    else
        printf '[%d/%d] %s: %s s (%s)\n' "$STEP_NO" "$STEPS" "$STEP_NAME" "$took" "$1" >&2
    fi
}
# For `make run` a failure is news, not an error: the host starts anyway and says the same.
die() {
    if ((STEP_NO)); then step_done failed; fi
    if ((FOR_RUN)); then
        say "$*: $UNISOLATED until \`make image\` succeeds"
        exit 0
    fi
    say "error: $*"
    exit 1
}
START_ONE="scripts/ensure_docker.sh installs and starts one, as root"
no_engine() {
    step_done failed
    if ((FOR_RUN)); then
        say "$*: $UNISOLATED; \`make image\` after starting one ($START_ONE)"
        exit 0
    fi
    say "error: $*; $START_ONE"
    exit 1
}

# Each `Step i/n : ...` line of the classic builder's output, with the time it took; what
# the engine says otherwise stays in the build log.
build_steps() {
    local line number text began=0 open=0 cached=
    while IFS= read -r line; do
        if [[ $line == "Step "* ]]; then
            ((open)) && printf '%5s s%s\n' "$(seconds_since "$began")" "$cached" >&2
            text=${line#Step }
            number=${text%% : *}
            text=${text#* : }
            ((${#text} > 66)) && text="${text:0:63}..."
            printf '      %5s %-66s ' "$number" "$text" >&2
            began=$(now_us)
            open=1
            cached=
        elif [[ $line == " ---> Using cache" ]]; then
            cached=" (cached)"
        fi
    done
    ((open)) && printf '%5s s%s\n' "$(seconds_since "$began")" "$cached" >&2
    return 0
}

configured_runtime() {
    # The host's own reading of the environment and .env; a broken setting is the host's to
    # report, and building as for `auto` is then the useful guess.
    (cd "$REPO" && "$PYTHON" -c 'from actors.config import load_config; print(load_config([]).runtime)' 2>/dev/null) \
        || echo auto
}

check_engine() {
    step "engine $ENDPOINT"
    if ! command -v docker >/dev/null; then
        no_engine "no docker command on this machine"
    fi
    local answer errors
    errors=$(mktemp "${TMPDIR:-/tmp}/hutch-engine.XXXXXX")
    TEMPS+=("$errors")
    # Bounded: a socket whose engine hangs must not hang `make run`.
    if ! answer=$(timeout 20 docker info --format '{{.ServerVersion}}' 2>"$errors"); then
        answer=$(grep -v '^[[:space:]]*$' "$errors" | tail -n 1)
        no_engine "no Docker engine reachable at $ENDPOINT (${answer:-no answer within 20 s})"
    fi
    step_done "Docker $answer"
}

build_base() {
    step "base image $BASE_IMAGE"
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        step_done cached
        return
    fi
    local tarball=$CACHE/rootfs-bookworm-$ARCH.tar
    if [[ ! -s $tarball ]]; then
        [[ $(id -u) -eq 0 ]] || die "debootstrap needs root to build $tarball"
        if ! command -v debootstrap >/dev/null; then
            note "installing debootstrap"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } \
                >"$CACHE/apt.log" 2>&1 || die "could not install debootstrap, see $CACHE/apt.log"
        fi
        local root
        root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        TEMPS+=("$root")
        note "debootstrap bookworm ($ARCH) from $MIRROR (log: $CACHE/debootstrap.log)"
        debootstrap --variant=minbase --arch="$ARCH" --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" \
            >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE/debootstrap.log"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" --numeric-owner -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
    fi
    note "importing $tarball"
    docker import --change 'LABEL hutch.project=hutch' --change 'ENV LANG=C.UTF-8' \
        "$tarball" "$BASE_IMAGE" >/dev/null || die "docker import of $tarball failed"
    step_done built
}

build_wheels() {
    local wheels=$1
    step "wheels"
    "$PYTHON" - "$IMAGE_PYTHON" <<'PY' || die "$PYTHON is not Python $IMAGE_PYTHON: its wheels would not fit the image"
import sys
sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != sys.argv[1])
PY
    # The runner's requirements and all they need, pinned to the versions the host's tests run
    # with: the list the image's hash covers.
    local wanted=$CACHE/requirements.txt
    (cd "$REPO" && "$PYTHON" -m actors.runtime.image requirements) >"$wanted.new" \
        || die "could not list the image's requirements (is hutch installed in $PYTHON's environment? make does it)"
    if [[ -f $wheels/requirements.txt ]] && cmp -s "$wanted.new" "$wheels/requirements.txt"; then
        rm -f "$wanted.new"
        step_done cached
        return
    fi
    mv "$wanted.new" "$wanted"
    note "building $(wc -l <"$wanted") wheels with $PYTHON (log: $CACHE/wheels.log)"
    rm -rf "$wheels.new"
    if ! "$PYTHON" -m pip wheel --wheel-dir "$wheels.new" -r "$wanted" >"$CACHE/wheels.log" 2>&1; then
        tail -n 30 "$CACHE/wheels.log" >&2
        die "pip wheel failed, see $CACHE/wheels.log"
    fi
    cp "$wanted" "$wheels.new/requirements.txt"
    rm -rf "$wheels"
    mv "$wheels.new" "$wheels"
    step_done built
}

build_agent() {
    local version source base context
    version=$(sed -n 's/^version[[:space:]]*=[[:space:]]*//p' "$REPO/setup.cfg" | head -n1)
    [[ -n $version ]] || die "no version in setup.cfg"
    step "agent image $IMAGE:$version"
    # The hash the host compares with the label (actors/runtime/image.py): one definition.
    source=$(cd "$REPO" && "$PYTHON" -m actors.runtime.image hash) || die "could not hash the image's sources"
    base=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
    if [[ $(docker image inspect -f '{{index .Config.Labels "hutch.source"}}/{{index .Config.Labels "hutch.base"}}' \
        "$IMAGE:latest" 2>/dev/null) == "$source/$base" ]] \
        && docker image inspect "$IMAGE:$version" >/dev/null 2>&1; then
        step_done "current, source $source"
        return
    fi
    # A small context of exactly what the image needs: the repo itself holds .venv and data.
    context=$(mktemp -d "${TMPDIR:-/tmp}/hutch-image.XXXXXX")
    TEMPS+=("$context")
    cp -r "$CACHE/wheels" "$context/wheels"
    for package in protocol container_runner; do
        cp -r "$REPO/$package" "$context/$package"
    done
    find "$context" -name __pycache__ -type d -prune -exec rm -rf {} +
    note "docker build, source $source (log: $CACHE/build.log)"
    if ! docker build --network none \
        --label hutch.project=hutch --label "hutch.version=$version" --label "hutch.source=$source" \
        --label "hutch.base=$base" \
        -f "$REPO/agent-image/Dockerfile" -t "$IMAGE:$version" -t "$IMAGE:latest" "$context" 2>&1 \
        | tee "$CACHE/build.log" | build_steps; then
        tail -n 30 "$CACHE/build.log" >&2
        die "docker build failed, see $CACHE/build.log"
    fi
    step_done "built, tagged $IMAGE:$version and $IMAGE:latest"
}

if ((FOR_RUN)); then
    RUNTIME=$(configured_runtime)
    if [[ $RUNTIME == process ]]; then
        say "HUTCH_RUNTIME=process: no agent image needed; $UNISOLATED"
        exit 0
    fi
    if [[ $RUNTIME == docker ]]; then
        UNISOLATED="HUTCH_RUNTIME=docker, so the host will not start without an engine and an image"
    fi
fi

case $(uname -m) in
    x86_64) ARCH=amd64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) die "unsupported machine $(uname -m)" ;;
esac

check_engine
mkdir -p "$CACHE"
build_base
build_wheels "$CACHE/wheels"
build_agent
if ((FOR_RUN)); then
    say "$IMAGE:latest ready in $(seconds_since "$START") s: agents run isolated, each in a container of its own"
else
    say "$IMAGE:latest ready in $(seconds_since "$START") s"
fi

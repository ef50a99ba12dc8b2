#!/usr/bin/env bash
# Build the agent image `hutch-agent:<version>` (also tagged `hutch-agent:latest`) without
# any container registry: the base is a Debian rootfs made with debootstrap and imported,
# the Python dependencies are wheels built on this host, and `docker build` runs with
# `--network none`.
#
# Idempotent: the base image, the debootstrap tarball and the wheels are reused when they
# exist (delete them, or the cache folder, to force a rebuild), and the agent image is
# rebuilt only when its sources, the Dockerfile or the pinned requirements changed: a run
# with nothing to do takes a second or two.
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
# Host-only dependencies that must never enter the image (docs/ARCHITECTURE.md: the image holds
# `protocol` and `container_runner` only).
HOST_ONLY='docker python-dotenv python-telegram-bot discord.py aiohttp typer rich'

if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

# Temporary folders, removed on any exit: a half-made rootfs must never be cached as a good one.
TEMPS=()
cleanup() { if ((${#TEMPS[@]})); then rm -rf "${TEMPS[@]}"; fi; }
trap cleanup EXIT

say() { printf 'build_image: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found (scripts/ensure_docker.sh installs it)"
timeout 20 docker info >/dev/null 2>&1 || die "no Docker engine reachable (scripts/ensure_docker.sh starts one)"

mkdir -p "$CACHE"
case $(uname -m) in
    x86_64) ARCH=amd64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) die "unsupported machine $(uname -m)" ;;
esac

build_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE exists, kept"
        return
    fi
    local tarball=$CACHE/rootfs-bookworm-$ARCH.tar
    if [[ ! -s $tarball ]]; then
        [[ $(id -u) -eq 0 ]] || die "debootstrap needs root to build $tarball"
        if ! command -v debootstrap >/dev/null; then
            say "installing debootstrap"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } \
                >"$CACHE/apt.log" 2>&1 || die "could not install debootstrap, see $CACHE/apt.log"
        fi
        local root
        root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        TEMPS+=("$root")
        say "debootstrap bookworm ($ARCH) from $MIRROR"
        debootstrap --variant=minbase --arch="$ARCH" --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" \
            >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE/debootstrap.log"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" --numeric-owner -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
    fi
    say "importing $tarball as $BASE_IMAGE"
    docker import --change 'LABEL hutch.project=hutch' --change 'ENV LANG=C.UTF-8' \
        "$tarball" "$BASE_IMAGE" >/dev/null
}

build_wheels() {
    local wheels=$1
    "$PYTHON" - "$IMAGE_PYTHON" <<'PY' || die "$PYTHON is not Python $IMAGE_PYTHON: its wheels would not fit the image"
import sys
sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != sys.argv[1])
PY
    local wanted=$CACHE/requirements.txt
    # The runtime requirements are setup.cfg's install_requires minus the host-only ones.
    "$PYTHON" - "$REPO/setup.cfg" "$HOST_ONLY" >"$wanted.new" <<'PY'
import configparser, re, sys
config = configparser.ConfigParser()
config.read(sys.argv[1])
host_only = set(sys.argv[2].split())
for line in config["options"]["install_requires"].split("\n"):
    line = line.strip()
    name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0] if line else ""
    if name and name.lower() not in host_only:
        print(line)
PY
    # Pin every package to the version the host's tests run with, when there is a venv.
    local pins=$CACHE/constraints.txt
    "$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^-e ' >"$pins.new" || true
    if [[ -f $wheels/requirements.txt ]] && cmp -s "$wanted.new" "$wanted" && cmp -s "$pins.new" "$pins"; then
        say "wheels are up to date"
        rm -f "$wanted.new" "$pins.new"
        return
    fi
    mv "$wanted.new" "$wanted"
    mv "$pins.new" "$pins"
    say "building wheels with $PYTHON"
    rm -rf "$wheels.new"
    if ! "$PYTHON" -m pip wheel --wheel-dir "$wheels.new" -c "$pins" -r "$wanted" >"$CACHE/wheels.log" 2>&1; then
        tail -n 30 "$CACHE/wheels.log" >&2
        die "pip wheel failed, see $CACHE/wheels.log"
    fi
    cp "$wanted" "$wheels.new/requirements.txt"
    rm -rf "$wheels"
    mv "$wheels.new" "$wheels"
}

# Everything the agent image is made of; the image carries it as a label, so a build with
# nothing changed is skipped without even sending a context to the engine.
source_hash() {
    {
        cd "$REPO"
        find agent-image/Dockerfile protocol container_runner -type f ! -path '*/__pycache__/*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum
        cat "$CACHE/wheels/requirements.txt" "$CACHE/constraints.txt"
    } | sha256sum | cut -c1-16
}

build_agent() {
    local version source context
    version=$(sed -n 's/^version[[:space:]]*=[[:space:]]*//p' "$REPO/setup.cfg" | head -n1)
    [[ -n $version ]] || die "no version in setup.cfg"
    source=$(source_hash)
    if [[ $(docker image inspect -f '{{index .Config.Labels "hutch.source"}}' "$IMAGE:latest" 2>/dev/null) == "$source" ]] \
        && docker image inspect "$IMAGE:$version" >/dev/null 2>&1; then
        say "$IMAGE:$version is up to date"
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
    say "building $IMAGE:$version"
    if ! docker build --network none \
        --label hutch.project=hutch --label "hutch.version=$version" --label "hutch.source=$source" \
        -f "$REPO/agent-image/Dockerfile" -t "$IMAGE:$version" -t "$IMAGE:latest" "$context" \
        >"$CACHE/build.log" 2>&1; then
        tail -n 30 "$CACHE/build.log" >&2
        die "docker build failed, see $CACHE/build.log"
    fi
    say "built $IMAGE:$version and $IMAGE:latest"
}

build_base
build_wheels "$CACHE/wheels"
build_agent

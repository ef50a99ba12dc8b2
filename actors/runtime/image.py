"""What the agent image is made of, and whether the image an engine holds is this code's.

The image carries, as the label `hutch.source`, a hash of everything it is built from: the
Dockerfile, `protocol/`, `container_runner/` and the pinned runtime requirements (the
packages the runner needs, at the versions this interpreter has). `scripts/build_image.sh`
asks this module for the hash and for the requirements it builds wheels of, and the host
and `hutch doctor` compare the label with the hash of the code they run: one definition of
"current" for all three, so a build is never skipped for an image the host then calls stale.

`python -m actors.runtime.image hash|requirements|check` is the build script's way in.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

# actors/runtime/image.py -> the checkout's root, where agent-image/ sits beside the packages.
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DOCKERFILE: Final = Path("agent-image") / "Dockerfile"
SOURCE_DIRS: Final = ("protocol", "container_runner")

AGENT_IMAGE: Final = "hutch-agent:latest"
LABEL_SOURCE: Final = "hutch.source"
DEFAULT_ENDPOINT: Final = "unix:///var/run/docker.sock"

# Host-only dependencies that never enter the image (docs/ARCHITECTURE.md: the image holds
# `protocol` and `container_runner` only), by normalised name.
HOST_ONLY: Final = frozenset(
    {"docker", "python-dotenv", "python-telegram-bot", "discord-py", "aiohttp", "typer", "rich", "jinja2"}
)

BUILD_FIX: Final = "make image"
ENGINE_FIX: Final = "start a Docker engine (as root, scripts/ensure_docker.sh does), then `make image`"

_NAME: Final = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA: Final = re.compile(r"\bextra\b")

ImageState = Literal["no-engine", "missing", "stale", "unknown", "current"]


def normalised(name: str) -> str:
    """PEP 503's form: `discord.py` and `Discord_Py` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    """The package a requirement line names, or None for one that only applies with an extra
    (`pytest; extra == "dev"`): extras are never what the runner needs."""
    spec, _, marker = line.partition(";")
    if _EXTRA.search(marker):
        return None
    found = _NAME.match(spec)
    return normalised(found.group(1)) if found else None


def image_requirements(distribution: str = "hutch") -> list[str]:
    """The packages the image needs: the distribution's own requirements minus the host's."""
    names = (_requirement_name(line) for line in importlib.metadata.requires(distribution) or [])
    return sorted({name for name in names if name is not None and name not in HOST_ONLY})


def pinned_requirements(roots: Iterable[str] | None = None) -> list[str]:
    """`name==version` for `roots` (default: `image_requirements()`) and everything they
    need, at the versions installed here: what the wheels are built of, so the image runs
    what the host's tests ran with.

    A dependency that is not installed is left out: its marker does not hold here (another
    platform, an older Python), and the image's Python is this one's version.
    """
    pending = list(image_requirements() if roots is None else (normalised(root) for root in roots))
    versions: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in versions:
            continue
        try:
            found = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        versions[name] = found.version
        pending.extend(dep for dep in map(_requirement_name, found.requires or []) if dep is not None)
    return [f"{name}=={versions[name]}" for name in sorted(versions)]


def _source_files(root: Path) -> list[Path]:
    """Every file the image is built from, relative to `root`, in a fixed order."""
    files = [DOCKERFILE]
    for folder in SOURCE_DIRS:
        # os.walk, not rglob: a linked folder is not followed, as `cp -r` copies the link.
        for current, dirs, names in os.walk(root / folder):
            dirs[:] = [name for name in dirs if name != "__pycache__"]
            files.extend(Path(current, name).relative_to(root) for name in names if not name.endswith(".pyc"))
    return sorted(files, key=lambda path: path.as_posix())


def source_hash(root: Path = REPO_ROOT, requirements: Sequence[str] | None = None) -> str | None:
    """16 hex digits naming the image these sources and `requirements` (default:
    `pinned_requirements()`) make; None when `root` holds no agent-image/Dockerfile."""
    if not (root / DOCKERFILE).is_file():
        return None
    digest = hashlib.sha256()
    for path in _source_files(root):
        if (root / path).is_symlink() or not (root / path).is_file():
            content = b"link or special file"
        else:
            content = (root / path).read_bytes()
        digest.update(path.as_posix().encode() + b"\0" + hashlib.sha256(content).digest())
    pins = pinned_requirements() if requirements is None else list(requirements)
    digest.update(b"requirements\0" + "\n".join(pins).encode())
    return digest.hexdigest()[:16]


def docker_endpoint() -> str:
    """Where the docker SDK looks for the engine (what the error messages name)."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENDPOINT


@dataclass(frozen=True)
class ImageStatus:
    """What an engine says about the agent image, beside the hash of the code asking."""

    endpoint: str
    image: str
    engine_error: str | None = None
    engine_version: str | None = None
    present: bool = False
    built_from: str | None = None
    wanted: str | None = None

    @property
    def state(self) -> ImageState:
        if self.engine_error is not None:
            return "no-engine"
        if not self.present:
            return "missing"
        if self.wanted is None:
            return "unknown"
        return "current" if self.built_from == self.wanted else "stale"

    @property
    def problem(self) -> str | None:
        """One line on what stands between this code and its agents in containers."""
        match self.state:
            case "no-engine":
                return f"no Docker engine reachable at {self.endpoint} ({self.engine_error})"
            case "missing":
                return f"the agent image {self.image} is not built"
            case "stale":
                built = self.built_from or "no recorded sources"
                return f"the agent image {self.image} is stale (built from {built}, this code is {self.wanted})"
            case "unknown":
                return (
                    f"the agent image {self.image} is there, but whether it is this code's cannot be told "
                    f"(no {DOCKERFILE} beside the code)"
                )
        return None

    @property
    def fix(self) -> str:
        return ENGINE_FIX if self.state == "no-engine" else BUILD_FIX


def inspect_image(image: str = AGENT_IMAGE, *, timeout: float = 10.0, root: Path = REPO_ROOT) -> ImageStatus:
    """Ask the engine (the docker SDK's, from the environment) about `image`; never raises for
    an engine that is down, slow or odd: that is an answer too."""
    # Imported here: the build script's `hash` and `requirements` need no engine client.
    import docker
    from docker.errors import DockerException, ImageNotFound

    endpoint = docker_endpoint()
    try:
        client = docker.from_env(timeout=timeout)
    except (DockerException, OSError) as exc:
        return ImageStatus(endpoint, image, engine_error=_first_line(exc))
    try:
        version = str(client.version().get("Version") or "") or None
        try:
            found = client.images.get(image)
        except ImageNotFound:
            return ImageStatus(endpoint, image, engine_version=version)
        labels = found.labels or {}
    except (DockerException, OSError) as exc:  # requests' connection errors are OSErrors
        return ImageStatus(endpoint, image, engine_error=_first_line(exc))
    finally:
        client.close()
    return ImageStatus(
        endpoint,
        image,
        engine_version=version,
        present=True,
        built_from=labels.get(LABEL_SOURCE),
        wanted=source_hash(root),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def main(argv: Sequence[str]) -> int:
    usage = "usage: python -m actors.runtime.image hash|requirements|check [IMAGE]"
    if not argv or argv[0] not in {"hash", "requirements", "check"}:
        print(usage, file=sys.stderr)
        return 2
    if argv[0] == "requirements":
        print("\n".join(pinned_requirements()))
    elif argv[0] == "hash":
        found = source_hash()
        if found is None:
            print(f"no {DOCKERFILE} under {REPO_ROOT}", file=sys.stderr)
            return 1
        print(found)
    else:
        status = inspect_image(argv[1] if len(argv) > 1 else AGENT_IMAGE)
        print(status.state, status.problem or f"{status.image} is current ({status.wanted})", sep=": ")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

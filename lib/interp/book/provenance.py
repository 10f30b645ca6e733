"""The provenance cell: what produced this page, so a reader can trust or redo it.

The runner appends a cell calling `show(...)` to every executed notebook. It records the
git revision (and whether the tree had uncommitted changes), package versions, the JAX
backend and devices, the parameter values with their hash, and the kernel's wall time.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from interp.cache import content_hash

PACKAGES = ("jax", "jaxlib", "numpy", "optax", "penzai", "flax", "tracr-pypi", "papermill",
            "jupyter-book")


def git_state(root: str | Path) -> dict[str, Any]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=20)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"revision": "not a git repository", "dirty": None}
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
    return {"revision": head.stdout.strip(), "dirty": dirty}


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def kernel_wall_time_s() -> float:
    """Seconds since this kernel process started: the notebook's execution time so far."""
    import psutil

    return time.time() - psutil.Process().create_time()


_SECRET = re.compile(r"(^|_)(api_?key|key|secret|password|token|auth)($|_)", re.IGNORECASE)


def redact(parameters: dict) -> dict:
    """Secrets belong in environment variables; if one slips into a parameter, hide it.

    Matches whole name segments (`api_key`, `auth_token`), not `max_new_tokens`.
    """
    return {k: ("<redacted>" if _SECRET.search(k) else v) for k, v in parameters.items()}


def collect(parameters: dict, profile: str, root: str | Path) -> dict[str, Any]:
    import jax

    parameters = redact(parameters)

    return {
        "profile": profile,
        "parameters": parameters,
        "parameter_hash": content_hash(parameters),
        "git": git_state(root),
        "python": platform.python_version(),
        "packages": package_versions(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "wall_time_s": round(kernel_wall_time_s(), 1),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _table_cell(value: Any) -> str:
    """A '|' in a value (a parameter's text) would split its table cell; escape it."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def show(parameters: dict, profile: str, root: str | Path) -> dict[str, Any]:
    """Display the provenance table in the notebook and return it."""
    from IPython.display import Markdown, display

    info = collect(parameters, profile, root)
    parameters = info["parameters"]
    git = info["git"]
    rev = git["revision"] + (" (uncommitted changes)" if git["dirty"] else "")
    rows = [
        ("profile", info["profile"]),
        ("parameter hash", info["parameter_hash"]),
        ("parameters", ", ".join(f"`{k}={v!r}`" for k, v in parameters.items())),
        ("git revision", rev),
        ("python", info["python"]),
        ("packages", ", ".join(f"{k} {v}" for k, v in info["packages"].items())),
        ("JAX backend / devices", f"{info['jax_backend']} / {', '.join(info['devices'])}"),
        ("wall time", f"{info['wall_time_s']} s"),
        ("finished", info["finished_at"]),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {_table_cell(v)} |" for k, v in rows]
    display(Markdown("\n".join(lines)))
    return info

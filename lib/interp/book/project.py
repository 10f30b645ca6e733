"""Where things live in a book project: the table of contents, notebooks, profiles, outputs.

A project root holds `_config.yml`, `_toc.yml` (Jupyter Book 1.x, `jb-book` format),
`book/` and `params/<notebook>/<profile>.yaml`. Executed copies go to
`_build/executed/<profile>/`, never over the source notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from interp.book.params import ParamError


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> "Project":
        """The nearest folder at or above `start` (default: cwd) holding a `_toc.yml`."""
        here = Path(start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "_toc.yml").exists():
                return cls(folder)
        raise ParamError(f"no _toc.yml found at or above {here}; run from the book's root "
                         "or pass --root")

    @property
    def build_dir(self) -> Path:
        return self.root / "_build"

    def executed_dir(self, profile: str) -> Path:
        return self.build_dir / "executed" / profile

    def output_dir(self, profile: str) -> Path:
        """HTML and claims.json for a profile: `_build/` for the default, else `_build/<profile>/`."""
        return self.build_dir if profile == "cpu" else self.build_dir / profile

    def toc_files(self) -> list[str]:
        """Every file entry of `_toc.yml`, in reading order, as written (no suffix)."""
        toc = yaml.safe_load((self.root / "_toc.yml").read_text(encoding="utf-8"))
        found: list[str] = [toc["root"]] if "root" in toc else []

        def walk(node):
            if isinstance(node, dict):
                if "file" in node:
                    found.append(node["file"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk({k: v for k, v in toc.items() if k != "root"})
        return found

    def notebooks(self) -> list[Path]:
        """Source notebooks listed in the table of contents."""
        out = []
        for entry in self.toc_files():
            path = self.root / entry
            nb = path if path.suffix == ".ipynb" else path.with_suffix(".ipynb")
            if nb.exists():
                out.append(nb)
        return out

    def notebook(self, name: str) -> Path:
        """Resolve a notebook by name (`ghost_grads`) or path (`book/ghost_grads.ipynb`)."""
        notebooks = self.notebooks()
        for nb in notebooks:
            if name in (nb.stem, str(nb.relative_to(self.root)), str(nb)):
                return nb
        candidate = Path(name)
        if candidate.suffix == ".ipynb" and candidate.exists():
            return candidate.resolve()
        names = ", ".join(nb.stem for nb in notebooks) or "none"
        raise ParamError(f"unknown notebook {name!r}; notebooks in _toc.yml: {names}")

    def params_dir(self, notebook: Path) -> Path:
        return self.root / "params" / notebook.stem

    def profiles(self, notebook: Path) -> list[str]:
        d = self.params_dir(notebook)
        return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []

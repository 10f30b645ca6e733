"""The book layer: parametrized execution of notebooks and the offline HTML build.

Jupyter Book 1.x renders pages; it has no notion of parameters. This package adds it:
each notebook declares its parameters in a cell tagged `parameters`, profiles in
`params/<notebook>/{smoke,cpu,gpu}.yaml` choose values, papermill executes an executed
copy, and the build renders those copies with a generated Claims page.

CLI (`python -m interp.book`):
    list                                 notebooks, their parameters and profiles
    run NOTEBOOK --profile P --set k=v   validate, then execute one notebook
    build --profile P                    execute what is stale, then build the HTML
"""

from interp.book.execute import NotebookFailed, run_notebook
from interp.book.params import ParamError
from interp.book.project import Project
from interp.book.site import BuildFailed, build

__all__ = ["BuildFailed", "NotebookFailed", "ParamError", "Project", "build", "run_notebook"]

"""The steering page's effect-vs-cost figure: one curve per variant over the coefficient sweep.

Why a library function: the page draws it for anger, wedding and love-hate alike, and a reader
rerunning the page with other variants gets the same figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from interp.steering import teacher_forced

TABLE_COLUMNS = ("variant", "coeff", "gain", "ci low", "ci high", "delta CE",
                 "max ||c v_t|| / ||h_t||")


def gain_curves(results: Sequence[teacher_forced.Measured], names: Sequence[str], concept: str,
                title: str):
    """Mean gain over prompts (normal 95% CI over prompts, `teacher_forced.summary_rows`)
    against delta CE, each curve starting at the unsteered point. recon+err equals orig by
    construction, so it is drawn dashed on top of it. Returns (figure, the summary rows)."""
    rows = teacher_forced.summary_rows(results, concept)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name in names:
        rs = sorted((r for r in rows if r["variant"] in (name, "unsteered")),
                    key=lambda r: r["coeff"])
        g = np.array([r["gain"] for r in rs])
        err = [g - np.array([r["ci low"] for r in rs]), np.array([r["ci high"] for r in rs]) - g]
        same = name == "recon+err"
        ax.errorbar([r["delta CE"] for r in rs], g, yerr=err, marker="x" if same else "o",
                    ls="--" if same else "-", capsize=2, label=name + (" (= orig)" if same else ""))
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("delta CE on neutral text (nats)")
    ax.set_ylabel(f"{concept} log-prob gain (nats)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, rows

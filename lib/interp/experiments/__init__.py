"""The measurements and claim verdicts of each page of the book, one module per page.

A page's notebook runs the experiment through the library, then hands the results to its
module's `verdicts(...)`, which reduces them to `interp.stats.Effect`s and decides each claim
with a named rule (`interp.claims.judge`). Keeping the rules here, not in notebook cells,
means every verdict is unit-tested on synthetic results where the answer is known.
"""

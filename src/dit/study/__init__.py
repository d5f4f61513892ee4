"""`dit study`: the paper's design-space and scaling experiments as one command.

``spec`` (what to run: axes, budget, evaluation), ``grid`` (the runs and their costs), ``runner``
(setup, one run, the scheduler), ``results`` (results.json), ``analysis`` (seed statistics, the
correlation, the findings), ``plots`` (PNG charts drawn with PIL) and ``report`` (report.md).
"""

"""report: one Markdown report with PNG plots, from the other stages' reports (:func:`.run.run`).

One function per section (:mod:`.sections`), one per figure (:mod:`.plots`); each figure's
data is saved beside it (``plotted.json``) so that what a picture shows can be checked.
"""

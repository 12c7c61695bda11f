"""train: fit the configured model on the prepared training split (:func:`.run.run`).

Device placement (``train.strategy``) is :mod:`train2infer.distribute`; the fitting itself,
shared with shrink, prune and convert, is :mod:`train2infer.fit`.
"""

"""shrink: channel pruning that removes work (:func:`.run.run`).

Removes whole filters and units (the dead ones, and with ``l1``/``l2`` all but the ``keep``
fraction with the largest BatchNorm-scaled norms; :mod:`.channels`), rebuilds a physically
smaller dense model with the surviving weights (:func:`train2infer.models.graph.slice_channels`)
and fine-tunes it. Reads the trained model, writes ``models/shrunk.keras``.
"""

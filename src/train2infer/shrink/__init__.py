"""shrink: channel pruning that removes work (:func:`.run.run`).

Finds the channels that must go together on any functional graph (dependency groups through
residual adds, concatenations, squeeze-excite; :mod:`train2infer.models.groups`), removes the
dead ones and, with ``l1``/``l2``, all but the ``keep`` fraction with the largest
BatchNorm-scaled norms (:mod:`.channels`), rebuilds a physically smaller dense model with the
surviving weights (:func:`train2infer.models.groups.slice_model`) and fine-tunes it. Reads the
trained model, writes ``models/shrunk.keras``.
"""

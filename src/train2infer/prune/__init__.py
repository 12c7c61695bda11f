"""prune: TF-MOT magnitude pruning with fine-tuning (:func:`.run.run`).

Starts from the trained model, or the shrunk one (``prune.start_from``); ``prune.pattern``
unstructured, ``m_by_n`` or ``block``; ``prune.policy`` none or ``xnnpack``; layer
selection by ``include`` / ``exclude`` (:mod:`.tfmot`). What it must have achieved is
checked by :mod:`.checks`. Writes ``models/pruned.keras`` (zeros in place, no wrappers).
"""

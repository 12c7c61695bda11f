"""The model: its config schemas (:mod:`.config`), builders (:mod:`.builders`), load/save
(:mod:`.io`), graph surgery (:mod:`.graph`: slicing channels, folding BatchNorm) and work
counting (:mod:`.work`). ``model`` is the one conf group shared by stages: an object every
stage uses, not a stage.
"""

"""convert: Keras models -> TFLite (every precision asked for) and SavedModel, fusion checked (:func:`.run.run`).

:mod:`.tflite` converts and maps TFLite ops back to Keras layers; :mod:`.saved_model` exports
the BatchNorm-folded model and shows what Grappler fuses; the folding itself is
:func:`train2infer.models.graph.fold_batchnorm`. The exported variants are listed in
``manifest.json`` (:mod:`train2infer.core.variants`).
"""

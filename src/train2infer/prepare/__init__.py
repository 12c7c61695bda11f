"""prepare: load the configured data source, resize, convert and split it (:func:`.run.run`).

Sources (``prepare.name``): ``digits`` (bundled with scikit-learn), ``folder`` (an image tree,
:mod:`.sources`), ``shapes`` (procedural, :mod:`.shapes`), ``keras`` (``tf_keras.datasets``,
from Keras's cache). Splits: :mod:`.split`; the written format: :mod:`train2infer.prepared`.
"""

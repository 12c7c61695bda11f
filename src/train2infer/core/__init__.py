"""TF-free core shared by every stage: parameters and their validator (:mod:`.params`), atomic
publication of outputs (:mod:`.publish`), the stage entry point (:mod:`.cli`), the variant type
and export manifest (:mod:`.variants`) and DVCLive's TSV files (:mod:`.live`).

Nothing here imports TensorFlow, so a bad parameter or file is reported in a second.
"""

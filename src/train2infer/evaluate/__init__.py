"""evaluate: accuracy, latency, throughput, work, memory, size and sparsity of every variant (:func:`.run.run`).

Times the Keras baseline and every TFLite variant the export manifest lists, each in its own
process (:mod:`.worker`), interleaved in rotating rounds (:mod:`.timing`); compares the work
rate with this machine's GEMM peaks (:mod:`.peaks`); writes ``metrics.json`` (:mod:`.metrics`).
"""

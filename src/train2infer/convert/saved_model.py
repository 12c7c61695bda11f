"""SavedModel export, and what TensorFlow's graph optimizer (Grappler) fuses in it."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tf_keras as keras


def export_saved_model(model: keras.Model, path: str | Path) -> None:
    """Export an inference SavedModel (``serving_default`` signature) to ``path``.

    The same model gives the same bytes: TensorFlow writes a random ``uuid`` into
    ``fingerprint.pb``; it is replaced by one derived from the fingerprint's own hashes of the
    graph, signatures and checkpoint (:func:`stable_fingerprint`).
    """
    tf.saved_model.save(model, str(path))
    stable_fingerprint(path)


def stable_fingerprint(saved_model_dir: str | Path) -> None:
    """Replace the random ``uuid`` of a SavedModel's ``fingerprint.pb`` (if it has one) by a
    digest of the fingerprint's content hashes, so equal SavedModels have equal files."""
    import hashlib

    from tensorflow.core.protobuf import fingerprint_pb2

    path = Path(saved_model_dir) / "fingerprint.pb"
    if not path.is_file():
        return
    fp = fingerprint_pb2.FingerprintDef.FromString(path.read_bytes())
    fp.ClearField("uuid")
    digest = hashlib.sha256(fp.SerializeToString(deterministic=True)).digest()[:16]
    fp.uuid = str(int.from_bytes(digest, "big"))
    path.write_bytes(fp.SerializeToString(deterministic=True))


def graph_optimization(saved_model_dir: str | Path) -> dict:
    """The SavedModel's inference graph before and after TF's graph optimizer (Grappler).

    The ``serving_default`` function is frozen (variables to constants), then run through
    Grappler with the passes TF applies before executing a graph: constant folding,
    arithmetic simplification, layout and remapping (which fuses ``Conv2D + BiasAdd +
    Relu`` into one ``_FusedConv2D`` and ``MatMul + BiasAdd + Relu`` into
    ``_FusedMatMul``), on the CPU.

    Returns:
        ``nodes_before``, ``nodes_after``, and ``ops_before`` / ``ops_after`` (op type ->
        count, ``Const``/``Identity``/``NoOp``/placeholders left out).
    """
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.grappler import tf_optimizer
    from tensorflow.python.training import saver

    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures["serving_default"]
    frozen = convert_variables_to_constants_v2(fn)
    graph_def = frozen.graph.as_graph_def()
    for node in graph_def.node:  # the remapper fuses only nodes placed on a device it knows
        node.device = "/device:CPU:0"

    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        meta = saver.export_meta_graph(graph_def=graph.as_graph_def(add_shapes=True), graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    for t in frozen.outputs:
        fetch.node_list.value.append(t.name)
    meta.collection_def["train_op"].CopyFrom(fetch)
    rewriter = rewriter_config_pb2.RewriterConfig()
    rewriter.optimizers.extend(["constfold", "arithmetic", "dependency", "layout", "remap"])
    rewriter.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.CopyFrom(rewriter)
    optimized = tf_optimizer.OptimizeGraph(config, meta)

    def ops(gd):
        skip = {"Const", "Identity", "NoOp", "Placeholder", "_Arg", "_Retval"}
        counts: dict[str, int] = {}
        for node in gd.node:
            if node.op not in skip:
                counts[node.op] = counts.get(node.op, 0) + 1
        return dict(sorted(counts.items()))

    before, after = ops(graph_def), ops(optimized)
    return {"nodes_before": sum(before.values()), "nodes_after": sum(after.values()),
            "ops_before": before, "ops_after": after}

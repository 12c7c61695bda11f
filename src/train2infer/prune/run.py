"""The prune stage's work: wrap, fine-tune with the schedule, strip, check, report."""

from __future__ import annotations

import math
from pathlib import Path

from train2infer.core.publish import write_json
from train2infer.prepared import load_meta, load_prepared


def run(cfg, train_cfg, seed: int, data: str | Path, model_in: str | Path, model_out: Path, reports: Path,
        teacher: str | Path | None = None) -> dict:
    """Magnitude-prune ``model_in`` as ``cfg`` (the ``prune`` section) says.

    Args:
        cfg: The ``prune`` section.
        train_cfg: The ``train`` section (device strategy and determinism of fine-tuning).
        seed: Global seed.
        data: Prepared-data folder.
        model_in: The ``.keras`` model to start from (trained or shrunk).
        model_out: Stripped ``.keras`` file to write (zeros in place, no wrappers).
        reports: Folder to write: DVCLive fine-tuning metrics (``metrics.json`` with the
            summary, ``plots/metrics/``) and ``sparsity.json`` (per pruned kernel).
        teacher: The trained ``.keras`` model to distil from (``cfg.distill_weight`` > 0); None:
            ``model_in``.

    Returns:
        The summary (sparsity achieved and targeted, schedule steps, validation accuracy,
        multiply-adds), ``chief`` and ``per_kernel``.

    Raises:
        Train2InferError: A kernel misses its target or breaks the ``m_by_n`` pattern.
        ParamError: ``frequency`` never updates the masks, or nothing is selected.
    """
    from dvclive import Live

    from train2infer import distill, distribute, fit
    from train2infer.models import io
    from train2infer.prune import tfmot

    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    strategy = fit.setup(train_cfg, seed)  # first TF call (multi-worker needs it)
    io.load_model(model_in)  # fail fast on a bad file
    total = cfg.epochs * math.ceil(len(train_xy[0]) / (cfg.batch_size * strategy.num_replicas_in_sync))
    begin, end = cfg.mask_steps(total)

    def build():  # a fresh load each time: the wrapper shares layers with the model it wraps
        schedule = tfmot.make_schedule(cfg.schedule, cfg.initial_sparsity, cfg.final_sparsity, begin, end,
                                       cfg.frequency)
        return tfmot.wrap(io.load_model(model_in), schedule, cfg.pattern, cfg.m_by_n, cfg.block_size, cfg.policy,
                          cfg.include, cfg.exclude)

    rec = fit.recipe(train_cfg, load_meta(data)["source"], warmup=False)
    build = distill.wrap(build, lambda: io.load_model(teacher or model_in), cfg.distill_weight, cfg.temperature,
                         rec.label_smoothing)
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        wrapped = distill.student_of(fit.fit_classifier(
            build, strategy, train_xy, val_xy, epochs=cfg.epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, scale_learning_rate=False, seed=seed,
            callbacks=tfmot.callbacks() + [fit.LiveLogger(live)], rec=rec)[0])
        stripped, per_kernel = strip_and_check(wrapped, cfg)
        skipped = tfmot.not_pruned(io.load_model(model_in), wrapped, cfg.include, cfg.exclude)
        live.summary.update(summarize(cfg, stripped, per_kernel, fit.accuracy(stripped, *val_xy))
                            | {"begin_step": begin, "end_step": end, "total_steps": total})
        summary = dict(live.summary)
    write_json(Path(reports) / "sparsity.json", {
        "pruned": [{"layer": k, "sparsity": round(v, 6)} for k, v in per_kernel.items()],
        "not_pruned": [{"layer": k, "reason": v} for k, v in skipped.items()]})
    io.save_for_inference(stripped, model_out)
    return {**summary, "chief": distribute.is_chief(strategy), "per_kernel": per_kernel, "not_pruned": skipped}


def summarize(cfg, stripped, per_kernel: dict, val_accuracy: float) -> dict:
    """The summary's sparsity, targets, settings, accuracy and multiply-adds."""
    from train2infer.models import work

    done = work.summary(stripped)
    return {"sparsity": done["sparsity"], "min_kernel_sparsity": min(per_kernel.values()),
            "target_sparsity": cfg.target_sparsity, "pattern": cfg.pattern, "policy": cfg.policy,
            "start_from": cfg.start_from, "distill_weight": cfg.distill_weight,
            "val_accuracy_inference": val_accuracy, "macs_dense": done["macs"], "macs_nonzero": done["macs_nonzero"]}


def strip_and_check(wrapped, cfg):
    """The model without wrappers, and the sparsity of each kernel that was pruned, checked
    against the target (and the ``m_by_n`` pattern)."""
    from train2infer.models import work
    from train2infer.prune import checks, tfmot

    pruned_names = [layer.layer.name for layer in wrapped.layers if tfmot.is_wrapper(layer)]
    stripped = tfmot.strip(wrapped)
    per_kernel = {n: s for n, s in work.kernel_sparsity(stripped).items() if n in pruned_names}
    checks.check_sparsity(per_kernel, cfg.target_sparsity, cfg.tolerance)
    if cfg.pattern == "m_by_n":
        checks.check_m_by_n({n: stripped.get_layer(n).get_weights()[0] for n in per_kernel}, cfg.m_by_n)
    return stripped, per_kernel


def describe(result: dict) -> str:
    """The stage's closing line."""
    k = result["per_kernel"].values()
    return (f"prune: {result['pattern']} from {result['start_from']}, target {result['target_sparsity']:g}, "
            f"{len(k)} kernels {min(k):.3f}..{max(k):.3f} ({len(result['not_pruned'])} layers with weights not "
            f"pruned, listed in sparsity.json), val accuracy {result['val_accuracy_inference']:.4f}")

"""What magnitude pruning must have achieved: every kernel at its target, the m:n pattern intact."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from train2infer import Train2InferError
from train2infer.core.params import ParamError


def m_by_n_violations(kernel: np.ndarray, m_by_n: Sequence[int]) -> int:
    """Groups of ``n`` consecutive input-channel weights with fewer than ``m`` zeros.

    The kernel (``[..., C_in, C_out]``) is read as TFLite stores it, output channel first
    and input channel last; groups run along the input channel (a partial last group
    counts its missing weights as zeros, as TF-MOT pads it).
    """
    m, n = int(m_by_n[0]), int(m_by_n[1])
    k = np.moveaxis(np.asarray(kernel), -1, 0)  # C_out first
    rows = k.reshape(-1, k.shape[-1])  # [C_out * spatial, C_in]
    pad = (-rows.shape[1]) % n
    rows = np.pad(rows, ((0, 0), (0, pad)))
    groups = rows.reshape(rows.shape[0], -1, n)
    return int(np.sum(np.sum(groups == 0, axis=-1) < m))


def check_sparsity(per_kernel: dict[str, float], target: float, tolerance: float) -> None:
    """Fail if any pruned kernel is more than ``tolerance`` below ``target``.

    Raises:
        ParamError: On ``tolerance``, naming every kernel that missed, with its sparsity.
    """
    if not per_kernel:
        raise Train2InferError("pruning found no prunable kernels in the model")
    missed = {name: s for name, s in per_kernel.items() if s < target - tolerance}
    if missed:
        detail = ", ".join(f"{n}={s:.3f}" for n, s in missed.items())
        raise ParamError("tolerance", tolerance, f"is exceeded: pruned kernels missed the target sparsity {target}: "
                         f"{detail}")


def check_m_by_n(kernels: dict[str, np.ndarray], m_by_n: Sequence[int]) -> None:
    """Fail if any kernel breaks the ``m_by_n`` pattern.

    Raises:
        ParamError: On ``m_by_n``, naming every kernel with groups that break it.
    """
    bad = {n: m_by_n_violations(k, m_by_n) for n, k in kernels.items()}
    if any(bad.values()):
        raise ParamError("m_by_n", list(m_by_n), "pattern broken in: "
                         + ", ".join(f"{n} ({v} groups)" for n, v in bad.items() if v))

"""How the device picks its kernels during a training: cuDNN autotuning, deterministic kernels.

:func:`backend_flags` sets torch's process-wide switches for a ``with`` block and puts every
one back afterwards, so a run's choice does not leak into the next job of a sweep (Hydra's
multirun runs its jobs in one process).

Why a deterministic mode: on the CPU a killed-and-resumed training ends bit-identical to an
uninterrupted one. On CUDA it does not by default: cuDNN's convolution and pooling backward
passes and the NLL loss's backward add with atomics (the order of float additions varies from
run to run), and cuDNN's autotuner may pick another algorithm in another process. Deterministic
mode asks for deterministic kernels everywhere they exist (warning, not failing, where an op has
none), and for a fixed cuBLAS workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which cuBLAS
needs for reproducible results from CUDA 10.2 on). It changes no number in expectation, only
makes the rounding repeatable, so it keys no stage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["CUBLAS_WORKSPACE", "backend_flags", "require_cublas_workspace"]

#: The cuBLAS workspace setting that makes cuBLAS reproducible (NVIDIA's documented value).
CUBLAS_WORKSPACE = ":4096:8"


def require_cublas_workspace() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS, unless already set.

    cuBLAS reads it when a workspace is first made for a stream, so call this before the first
    CUDA matrix product of the process (``calib.run.build_plan`` does, for ``deterministic``).
    A value the user set is kept (``:16:8`` is the other reproducible one).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def backend_flags(*, deterministic: bool = False, cudnn_benchmark: bool = False) -> Iterator[None]:
    """Within the block: deterministic kernels, or cuDNN's autotuner; restored on exit.

    Args:
        deterministic: ``cudnn.deterministic = True``, ``cudnn.benchmark = False``,
            ``torch.use_deterministic_algorithms(True, warn_only=True)`` and
            :func:`require_cublas_workspace`.
        cudnn_benchmark: (without ``deterministic``) ``cudnn.benchmark = True``: cuDNN times
            its convolution algorithms once per input shape and keeps the fastest; for
            fixed-size inputs. ``False`` leaves the process's setting as it is.

    The previous ``cudnn.benchmark``, ``cudnn.deterministic`` and deterministic-algorithms
    settings come back on exit, even when the block raises. ``CUBLAS_WORKSPACE_CONFIG`` stays
    set (cuBLAS has read it by then; it costs a few MB of workspace).
    """
    cudnn = torch.backends.cudnn
    saved = (
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        if deterministic:
            require_cublas_workspace()
            cudnn.deterministic = True
            cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif cudnn_benchmark:
            cudnn.benchmark = True
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])

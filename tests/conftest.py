"""Shared fixtures: the torch devices to run on (CUDA only where one is present)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ),
    ]
)
def device(request) -> torch.device:
    """Each available torch device in turn."""
    return torch.device(request.param)

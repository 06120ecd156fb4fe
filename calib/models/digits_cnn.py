"""A small CNN for the offline digits demo (16×16 gray images, 10 classes), fast on a CPU."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitsCNN"]


class DigitsCNN(nn.Module):
    """Two conv blocks and a 128-unit layer: images ``(N, in_chans, H, W)`` → features ``(N, 128)``.

    conv3×3(32)-BN-ReLU-maxpool2 → conv3×3(64)-BN-ReLU-maxpool2 → adaptive avg-pool to 4×4
    → flatten (1024) → linear(128)-ReLU. Built for 16×16 inputs (the pooling to 4×4 is then
    exact), any size ≥ 4×4 works.

    Args:
        in_chans: input channels (1 for the gray digits).
        num_features: width of the output features.
    """

    def __init__(self, in_chans: int = 1, num_features: int = 128) -> None:
        super().__init__()
        self.num_features = num_features
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, num_features), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))

"""The lab's architecture: the same class the lab trains with, so its saved weights load into it.

Replace this with your own `nn.Module` (and the matching parameters in config.py); keep it importable
without histo so your training code can use it too.
"""

from __future__ import annotations

from torch import Tensor, nn


class LabCNN(nn.Module):
    """`blocks` x (3x3 conv, batch norm, ReLU, 2x2 max pool), channels `width`, 2 `width`, ...;
    global average pooling and a linear embedding: [N, 3, S, S] -> [N, output_dim]."""

    def __init__(self, width: int = 32, blocks: int = 4, output_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels_in, channels = 3, width
        for _ in range(blocks):
            layers += [
                nn.Conv2d(channels_in, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels_in, channels = channels, channels * 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed = nn.Linear(channels_in, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.pool(self.features(x)).flatten(1))

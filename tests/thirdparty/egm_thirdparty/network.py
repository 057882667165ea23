import math

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, space, output_shape, hidden):
        super().__init__()
        self.encoder = space.encoder(embedding_dim=4)
        self.output_shape = torch.Size(output_shape)
        self.body = nn.Sequential(nn.Linear(self.encoder.out_features + 1, hidden), nn.SiLU(),
                                  nn.Linear(hidden, max(1, math.prod(self.output_shape))))

    def forward(self, x, t):
        h = torch.cat([self.encoder(x), t.view(-1, 1).float()], dim=1)
        out = self.body(h)
        return out.view(-1, *self.output_shape) if len(self.output_shape) else out.squeeze(-1)


def build_tiny_net(space, output_shapes, hidden: int = 32):
    """One hidden layer on the space's encoder, with the time appended."""
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
    return TinyNet(space, output_shapes, hidden)

"""Feed-forward sub-layers: the GELU MLP and SwiGLU, by name."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from mmsdk.layers.dropout import Dropout

MlpKind = Literal["gelu", "swiglu"]


class GeluMlp(nn.Module):
    """Linear → GELU → [dropout] → Linear → [dropout].

    Args:
        dim: input and output width.
        hidden: hidden width.
        dropout: dropout on the output.
        hidden_dropout: dropout on the GELU activations; None = `dropout`.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, hidden_dropout: float | None = None) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = Dropout(dropout)
        self.hidden_dropout = Dropout(dropout if hidden_dropout is None else hidden_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.hidden_dropout(F.gelu(self.fc1(x)))))


class SwiGluMlp(nn.Module):
    """SwiGLU: (SiLU(x W₁) ⊙ x W₃) W₂, with the hidden width scaled by 2/3 to keep the parameter count.

    Dropout arguments as in :class:`GeluMlp`.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, hidden_dropout: float | None = None) -> None:
        super().__init__()
        hidden = int(2 * hidden / 3)
        self.gate_up = nn.Linear(dim, 2 * hidden)
        self.down = nn.Linear(hidden, dim)
        self.dropout = Dropout(dropout)
        self.hidden_dropout = Dropout(dropout if hidden_dropout is None else hidden_dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(self.hidden_dropout(F.silu(gate) * up)))


def build_mlp(
    kind: MlpKind, dim: int, hidden: int, dropout: float = 0.0, hidden_dropout: float | None = None
) -> nn.Module:
    """GELU MLP or SwiGLU by name; `hidden_dropout` (None = `dropout`) acts on the hidden activations."""
    if kind == "gelu":
        return GeluMlp(dim, hidden, dropout, hidden_dropout)
    if kind == "swiglu":
        return SwiGluMlp(dim, hidden, dropout, hidden_dropout)
    raise ValueError(f"unknown mlp {kind!r}; choose gelu or swiglu")

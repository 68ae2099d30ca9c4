"""The torch modules of the zoo, in a module of their own: it imports torch (the rest of the zoo does not need
to), and an nn.Module saved in MLflow's pickle format loads by reference to its class, which must be importable."""

from __future__ import annotations

import torch

FEATURES = 15
WINDOW = (60, 8)  # timesteps x features of the sequence model


class Net(torch.nn.Module):
    """A small MLP over a feature vector -> class probabilities. forward(x): the input is called `x`, as in most
    hand-written modules."""

    def __init__(self, width: int = FEATURES, classes: int = 2) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(width, 16)
        self.out = torch.nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(x))), dim=-1)


class Sequence(torch.nn.Module):
    """An LSTM over a [N, 60, 8] window of bars -> [N, 2] direction probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(WINDOW[1], 16, batch_first=True)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(window)
        return torch.softmax(self.head(hidden[-1]), dim=-1)


class TwoHeads(torch.nn.Module):
    """Two outputs: class probabilities and the edge p_up - p_down."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = self.net(x)
        return probabilities, probabilities[:, 1:] - probabilities[:, :1]


def seeded(cls: type[torch.nn.Module], seed: int) -> torch.nn.Module:
    """An instance of `cls` with weights drawn from `seed`, in eval mode."""
    torch.manual_seed(seed)
    return cls().eval()

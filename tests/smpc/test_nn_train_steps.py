"""Issue 16's "done when": a torch model with Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout and Linear,
converted with ``smpc.nn.from_torch``, trains for 20 SGD steps on shares (both families) and ends with weights
within 1e-2 of the same 20 steps in plain torch.  Dropout uses the same public masks on both sides (the only
way to take torch's steps); joint secret masks are tested in test_nn_normalization.py.

The convolution before batch norm has no bias, as is usual: such a bias has a gradient of exactly zero in real
arithmetic (batch norm subtracts it again), but on shares its gradient is the truncation bias of sums over the
batch and the image (about 5e-3 per step here), which momentum turns into a drift that moves the run away from
torch's (0.27 on the conv weights after 20 steps, measured).  The README says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import smpc
from smpc import nn as snn
from tests.support.harness import run_parties

STEPS, BATCH, CLASSES = 20, 8, 3
WEIGHT_TOLERANCE = 1e-2
P = 0.5


def _model() -> torch.nn.Sequential:
    torch.manual_seed(11)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1, bias=False), torch.nn.BatchNorm2d(2, eps=1e-3), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Dropout(P), torch.nn.Flatten(), torch.nn.Linear(8, CLASSES),
    ).double()


def _data() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(12)
    images = torch.rand(STEPS, BATCH, 1, 4, 4, dtype=torch.float64, generator=generator) * 2 - 1
    labels = torch.randint(0, CLASSES, (STEPS, BATCH), generator=generator)
    masks = [(torch.rand(BATCH, 2, 2, 2, generator=generator) >= P).to(torch.float64) for _ in range(STEPS)]
    return images, labels, masks


class _PublicMaskDropout(torch.nn.Module):
    """Plain torch's dropout with given masks (x * mask / (1 - p)), one per forward."""

    def __init__(self, masks: Iterator[torch.Tensor]) -> None:
        super().__init__()
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * next(self.masks) / (1 - P)


def _plain_steps() -> dict[str, torch.Tensor]:
    model = _model()
    images, labels, masks = _data()
    model[4] = _PublicMaskDropout(iter(masks))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images[step]), labels[step]).backward()
        optimizer.step()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _shared_steps(session: smpc.Session, initial: torch.nn.Module) -> dict[str, Any]:
    images, labels, masks = _data()
    model = snn.from_torch(initial, session, owner=0)
    dropout = model[4]
    assert isinstance(dropout, snn.Dropout)
    dropout.public_masks = iter(masks)
    data_owner = session.world_size - 1
    shared_images = session.share(images if session.rank == data_owner else None, owner=data_owner)
    shared_labels = session.share(torch.nn.functional.one_hot(labels, CLASSES).double()
                                  if session.rank == data_owner else None, owner=data_owner)
    criterion = snn.CrossEntropyLoss()
    optimizer = smpc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(STEPS):
        optimizer.zero_grad()
        criterion(model(shared_images[step]), shared_labels[step]).backward()
        optimizer.step()
    plain = model.reveal(to=0, dtype=torch.float64)
    return {} if plain is None else {name: value for name, value in plain.state_dict().items()}


@pytest.mark.parametrize("protocol", ["dealer", "replicated"])
def test_converted_cnn_takes_torchs_twenty_steps(protocol: str) -> None:
    """Every parameter and running statistic after 20 steps on shares within 1e-2 of torch's, and the weights
    moved further than that from where they started (so agreeing is not standing still)."""
    expected = _plain_steps()
    initial = _model()          # here, not in the parties' threads: torch's seeding is global
    start = initial.state_dict()
    got = run_parties(lambda session: _shared_steps(session, initial), 3, protocol=protocol)[0]
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert float((got[name].double() - value.double()).abs().max()) <= WEIGHT_TOLERANCE, name
    moved = max(float((expected[name].double() - start[name].double()).abs().max())
                for name in ("0.weight", "6.weight"))
    assert moved > 10 * WEIGHT_TOLERANCE

"""The training draws of an epoch: the paper's (every video once) by default, or balanced."""

from __future__ import annotations

import numpy as np
import pytest

from avbench.engine.train import epoch_draws
from avbench.errors import TrainingError
from avbench.protocols import get_protocol
from avbench.torch_detector import TorchConfig

LABELS = np.array([0] * 3 + [1] * 37)


def test_default_draws_every_training_video_once_per_epoch():
    for epoch in (1, 2):
        d = epoch_draws(LABELS, len(LABELS), seed=0, epoch=epoch, balance="none")
        assert sorted(d.tolist()) == list(range(len(LABELS)))
    one, two = (epoch_draws(LABELS, len(LABELS), 0, e, "none") for e in (1, 2))
    assert one.tolist() != two.tolist()  # another order each epoch
    assert epoch_draws(LABELS, len(LABELS), 0, 1, "none").tolist() == one.tolist()
    longer = epoch_draws(LABELS, 2 * len(LABELS) + 5, 0, 1, "none")
    assert np.bincount(longer, minlength=len(LABELS)).min() >= 2


def test_class_balance_draws_reals_as_often_as_fakes():
    d = epoch_draws(LABELS, 4000, seed=0, epoch=1, balance="class")
    reals = int(np.isin(d, np.flatnonzero(LABELS == 0)).sum())
    assert 1800 < reals < 2200  # 3 reals of 40 videos, drawn half the time
    with pytest.raises(TrainingError, match="needs real and fake"):
        epoch_draws(np.ones(5, dtype=int), 5, 0, 1, "class")
    with pytest.raises(TrainingError, match="not one of class, none"):
        epoch_draws(LABELS, 5, 0, 1, "video")


@pytest.mark.parametrize("name", ["intra", "cross-manip", "cross-dataset"])
def test_the_shipped_protocols_sample_as_the_paper(name):
    from avbench.plugins import get_plugins

    assert get_protocol(name, get_plugins()).balance == "none"


def test_balance_is_a_detector_setting():
    assert TorchConfig().balance == "protocol"
    assert TorchConfig(balance="class").balance == "class"

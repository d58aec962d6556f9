import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from avbench.config import apply_overrides, config_hash, parse_set_items
from avbench.errors import ConfigError


@dataclass
class Cfg:
    epochs: int = 3
    lr: float = 1e-4
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    clip: float | None = None
    flag: bool = False
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")


def test_parse_set_items_splits_and_normalises_dashes():
    assert parse_set_items(["a=1", "b-c = x=y"]) == {"a": "1", "b_c": "x=y"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set_items(["novalue"])


def test_overrides_are_typed():
    c = apply_overrides(Cfg(), {"epochs": "5", "lr": "0.01", "amp": "bf16", "clip": "none",
                                "flag": "yes", "name": "y", "sizes": "3,4"})
    assert (c.epochs, c.lr, c.amp, c.clip, c.flag, c.name, c.sizes) == (
        5, 0.01, "bf16", None, True, "y", (3, 4))
    assert apply_overrides(Cfg(), {"clip": "1.5"}).clip == 1.5


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", "three", "expected an integer"),
        ("lr", "fast", "expected a number"),
        ("amp", "fp16", "choose one of auto, bf16, fp32"),
        ("flag", "maybe", "expected true or false"),
        ("epochs", "0", "epochs must be >= 1"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Cfg(), {key: value}, who="detector 'd'")


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), {"epoch": "2"}, who="detector 'd'")
    assert "unknown key 'epoch' for detector 'd'" in str(e.value)
    assert "amp, clip, epochs, flag, lr, name, sizes" in str(e.value)


def test_config_hash_changes_with_values():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(Cfg(epochs=4))
    # the engine hands over the config as a dict: it must hash as the dataclass does
    assert config_hash(dataclasses.asdict(Cfg(epochs=4))) == config_hash(Cfg(epochs=4))
    assert config_hash({"epochs": 3}) != config_hash({"epochs": 4}) != config_hash({})

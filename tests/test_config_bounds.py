"""Bounds of config fields and finite floats: ``--set`` values that would wreck a run are
refused with one line naming the key and the value (exit 2)."""

import dataclasses
import typing
from dataclasses import dataclass, field

import pytest

from avbench.baselines.mfcc_logreg import MfccLogRegConfig
from avbench.baselines.sync_corr import SyncCorrConfig
from avbench.config import apply_overrides, bounded, config_hash, describe_bounds, field_bounds
from avbench.errors import ConfigError
from avbench.testing import run_cli


@dataclass
class Base:
    lr: float = bounded(1e-4, gt=0)
    clip: float | None = bounded(None, ge=0, note="0 or none: no clipping")
    decay: float = bounded(0.1, gt=0, le=1, note="1: no decay")
    grid: tuple[float, ...] = bounded((0.1, 1.0), gt=0)
    plain: float = 1.0
    maybe: float | None = None
    wild: float = field(default=0.0, metadata={"nonfinite": True})
    workers: int = field(default=-1, metadata={"ge": -1})


@dataclass
class Child(Base):
    lr: float = 1e-3  # a redeclared default keeps the base's bounds


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", "-1", "bad value '-1' for lr: lr must be > 0"),
        ("lr", "0", "bad value '0' for lr: lr must be > 0"),
        ("clip", "-1", "bad value '-1' for clip: clip must be >= 0 (0 or none: no clipping)"),
        ("decay", "-5", "bad value '-5' for decay: decay must be in (0, 1] (1: no decay)"),
        ("decay", "1.5", "bad value '1.5' for decay: decay must be in (0, 1] (1: no decay)"),
        ("grid", "0.1,0", "bad value '0.1,0' for grid: grid must be > 0"),
        ("workers", "-2", "bad value '-2' for workers: workers must be >= -1"),
    ],
)
def test_values_outside_the_bounds_are_refused_naming_key_and_value(key, value, message):
    for cls in (Base, Child):
        with pytest.raises(ConfigError) as e:
            apply_overrides(cls(), {key: value})
        assert str(e.value) == message


@pytest.mark.parametrize("key", ["lr", "plain", "maybe", "clip", "grid", "decay"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_floats_are_finite_unless_the_field_allows_otherwise(key, value):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Base(), {key: value})
    assert str(e.value) == (f"bad value {value!r} for {key}: expected a finite number "
                            "(nan and inf are not allowed)")


def test_values_within_the_bounds_and_allowed_nonfinite_pass():
    c = apply_overrides(Child(), {"lr": "0.5", "clip": "0", "decay": "1", "grid": "2,3",
                                  "plain": "-7", "maybe": "none", "wild": "nan",
                                  "workers": "-1"})
    assert (c.lr, c.clip, c.decay, c.grid, c.plain, c.maybe, c.workers) == (
        0.5, 0.0, 1.0, (2.0, 3.0), -7.0, None, -1)
    assert c.wild != c.wild  # nan
    assert apply_overrides(Base(), {"wild": "-inf"}).wild == float("-inf")
    assert apply_overrides(Base(), {"clip": "none"}).clip is None


def test_describe_bounds():
    assert describe_bounds(field_bounds(Child, "lr")) == "> 0"
    assert describe_bounds(field_bounds(Base, "decay")) == "in (0, 1] (1: no decay)"
    assert describe_bounds({"gt": -1, "lt": 1}) == "in (-1, 1)"
    assert describe_bounds({"ge": 0, "le": 1}) == "in [0, 1]"
    assert describe_bounds({"ge": 16}) == ">= 16"
    assert describe_bounds(field_bounds(Base, "plain")) == ""


def test_bounds_are_not_part_of_the_config_hash():
    @dataclass
    class Unbounded:
        lr: float = 1e-4
        clip: float | None = None

    @dataclass
    class Bounded:
        lr: float = bounded(1e-4, gt=0)
        clip: float | None = bounded(None, ge=0, note="0: off")

    assert config_hash(Unbounded()) == config_hash(Bounded())
    assert config_hash(Unbounded(lr=0.5)) == config_hash(Bounded(lr=0.5))


def _numeric(tp) -> bool:
    if tp in (int, float):
        return True
    return any(_numeric(a) for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis)


def _config_classes():
    from avbench_avprompt.config import AVPromptConfig

    from avbench.torch_detector import TorchConfig

    return [TorchConfig, AVPromptConfig, MfccLogRegConfig, SyncCorrConfig]


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_numeric_field_of_the_shipped_configs_has_bounds_its_default_meets(cls):
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        if not _numeric(hints[f.name]):
            continue
        meta = field_bounds(cls, f.name)
        assert describe_bounds(meta), f"{cls.__name__}.{f.name} declares no bounds"
        # the default itself passes (through the same check --set values go through)
        apply_overrides(default, {f.name: getattr(default, f.name)})


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("clip_grad=-1", "bad value '-1' for clip_grad: clip_grad must be >= 0 "
                         "(0 or none: no clipping)"),
        ("lr_decay=-5", "bad value '-5' for lr_decay: lr_decay must be in (0, 1] (1: no decay)"),
        ("lr=nan", "bad value 'nan' for lr: expected a finite number"),
        ("lr=inf", "bad value 'inf' for lr: expected a finite number"),
        ("alpha=nan", "bad value 'nan' for alpha: expected a finite number"),
        ("alpha=-1", "bad value '-1' for alpha: alpha must be >= 0"),
        ("epochs=0", "bad value '0' for epochs: epochs must be >= 1"),
        ("batch_size=0", "bad value '0' for batch_size: batch_size must be >= 1"),
    ],
)
def test_the_cli_refuses_bad_avprompt_settings_with_one_line(setting, message):
    r = run_cli(["detectors", "show", "avprompt", "--set", setting])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + message), r.stderr


def test_the_cli_refuses_bad_baseline_settings():
    r = run_cli(["detectors", "show", "sync-corr", "--set", "r_neutral=1"])
    assert r.exit_code == 2
    assert "r_neutral must be in (-1, 1)" in r.stderr
    r = run_cli(["detectors", "show", "mfcc-logreg", "--set", "c_grid=0.1,-1"])
    assert r.exit_code == 2
    assert "c_grid must be > 0" in r.stderr


def test_detectors_show_lists_the_bounds_beside_the_type():
    r = run_cli(["detectors", "show", "sync-corr"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip()
            for line in r.stdout.splitlines() if line.count("│") == 4}
    assert rows["r_neutral"] == "float, in (-1, 1)"
    assert rows["max_lag"] == "int, >= 0"
    assert rows["envelope"] == "'linear' | 'db'"

"""Config resolution: presets, files, flags, --set overrides and one-sentence validation errors."""

from __future__ import annotations

import pytest
import yaml

from nas import config as cfg
from nas.errors import UserError


def test_defaults_resolve_and_dataset_preset_applies():
    config = cfg.resolve()
    assert config["space"]["name"] == "nb201" and config["data"]["name"] == "digits"
    # configs/datasets/digits.yaml over the schema's defaults, then configs/spaces/nb201/digits.yaml over both
    pair = yaml.safe_load((cfg.presets_dir() / "spaces" / "nb201" / "digits.yaml").read_text())
    assert config["train"]["weight_decay"] == 5.0e-4 and config["eval"]["calib_batches"] == 4  # dataset preset
    assert config["train"]["epochs"] == pair["train"]["epochs"] != 20  # the pair preset wins over the dataset's
    # every build option is recorded, with the supernet constructor's defaults where no preset names one
    assert config["supernet"] == {"C": 8, "N": 1, "affine": False, "bn_mode": "batch", "mode": "mix",
                                  "scale_group_by_mass": False}
    assert cfg.resolve(overrides=["data.name=synthetic"])["supernet"]["C"] == 16  # only for nb201 + digits


def test_layers_apply_in_order(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.2, "epochs": 7}, "data": {"name": "synthetic"}}))
    config = cfg.resolve([str(path)], {"train.epochs": 9}, ["train.lr=0.01", "strategy.reject_disconnected=true"])
    assert config["data"]["name"] == "synthetic"
    assert config["train"]["batch_size"] == 32  # synthetic preset, chosen by the file's dataset name
    assert config["train"]["epochs"] == 9  # flag over file
    assert config["train"]["lr"] == 0.01  # --set over everything
    assert config["strategy"]["reject_disconnected"] is True


def test_set_values_are_typed():
    assert cfg.parse_override("train.lr=5e-2") == {"train": {"lr": 0.05}}
    assert cfg.parse_override("train.amp=true") == {"train": {"amp": True}}
    assert cfg.parse_override("search.max_params=null") == {"search": {"max_params": None}}
    with pytest.raises(UserError, match="KEY=VALUE"):
        cfg.parse_override("train.lr")


@pytest.mark.parametrize("override, fragment", [
    ("train.lr=-1", "train.lr=-1 is not valid; accepted: a number >= 0"),
    ("train.epochs=0", "train.epochs=0 is not valid; accepted: an integer >= 1"),
    ("train.epochs=2.5", "train.epochs=2.5 is not valid"),
    ("train.amp=maybe", "train.amp='maybe' is not valid; accepted: true or false"),
    ("train.lrr=0.1", "unknown config key 'train.lrr' (did you mean train.lr?)"),
    ("eval.bn_mode=sometimes", "accepted: batch, running, recalibrate or null"),
    ("train.device=tpu", "accepted: auto, cpu, cuda, cuda:N or mps"),
    ("space.name=nb999", "unknown search space 'nb999' (space.name); accepted: nb201"),
    ("strategy.name=magic", "unknown strategy 'magic' (strategy.name); accepted: uniform"),
    ("data.name=mnist", "unknown dataset 'mnist' (data.name); accepted: digits"),
    ("strategy.temperature=1", "unknown config key 'strategy.temperature'"),
    ("supernet.width=2", "unknown config key 'supernet.width'"),
    ("supernet.C=0", "supernet.C=0 is not valid"),
    ("data.valid_fraction=1.0", "data.valid_fraction=1.0 is not valid"),
    ("eval.bn_mode=running", "supernet.bn_mode=batch keeps none"),
    ("data.valid_fraction=0", "leaves no validation split"),
    ("training.lr=1", "unknown config key 'training'"),
    ("supernet.N=3", "unknown config key 'supernet.N'"),  # with --space darts below
])
def test_bad_values_fail_with_one_sentence(override, fragment):
    flags = {"space.name": "darts"} if override.startswith("supernet.N") else {}
    with pytest.raises(UserError) as info:
        cfg.resolve([], flags, [override])
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_config_files_and_presets(tmp_path):
    assert cfg.find_config_file("digits_quick").name == "digits_quick.yaml"
    with pytest.raises(UserError, match="neither a file nor a preset"):
        cfg.find_config_file("nothing-here")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        cfg.resolve([str(bad)])
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        cfg.resolve([str(listy)])
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError, match="not valid YAML"):  # the safe loader refuses python tags
        cfg.resolve([str(unsafe)])


def test_every_preset_resolves():
    for kind in ("experiments",):
        for path in sorted((cfg.presets_dir() / kind).glob("*.yaml")):
            config = cfg.resolve([str(path)])
            assert cfg.load_yaml(path)  # non-empty
            assert yaml.safe_load(cfg.dump(config)) == config  # dump round-trips


def test_pada_reference_experiment_matches_the_spec():
    config = cfg.resolve(["spos_nb201_cifar10"])
    train = config["train"]
    assert (train["epochs"], train["batch_size"], train["lr"], train["momentum"]) == (250, 256, 0.05, 0.9)
    assert (train["weight_decay"], train["grad_clip"], train["lr_step"]) == (2.5e-4, 5.0, "epoch")
    assert config["data"]["valid_fraction"] == 0.0 and config["supernet"]["bn_mode"] == "batch"

"""Hyper-parameters: defaults <- recipe file (TOML or YAML) <- command-line flags."""

import argparse

import pytest

from finetune.train import TrainConfig, add_arguments, config_from_args
from indexing.errors import UserError


def parse(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--catalog", "c", "--index", "i", "--out", "o", *argv])


def test_defaults_are_the_known_recipe():
    cfg = config_from_args(parse([]))
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lr, cfg.lr_scheduler, cfg.warmup_steps,
            cfg.weight_decay, cfg.seed, cfg.four_bit) == (16, 16, 0.0, 2e-4, "linear", 5, 0.01, 3407, True)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("name, text", [("r.toml", 'lr = 1e-4\nlora-r = 8\nmax_steps = 50\n'),
                                        ("r.yaml", "lr: 1.0e-4\nlora-r: 8\nmax_steps: 50\n")])
def test_recipe_then_flags_override(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    cfg = config_from_args(parse(["--recipe", str(f), "--lora-r", "32", "--no-4bit"]))
    assert cfg.lr == 1e-4 and cfg.max_steps == 50  # from the recipe
    assert cfg.lora_r == 32 and cfg.four_bit is False  # flags win
    assert isinstance(cfg, TrainConfig)


def test_bad_recipe_is_a_clear_error(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("learning_rat = 3\n")
    with pytest.raises(UserError, match="unknown recipe keys learning_rat"):
        config_from_args(parse(["--recipe", str(f)]))
    f.write_text("lr = = 3\n")
    with pytest.raises(UserError, match="cannot parse recipe"):
        config_from_args(parse(["--recipe", str(f)]))

"""Hyper-parameters: defaults <- recipe file (TOML or YAML) <- command-line flags; the flags are made
from the config dataclasses (finetune/flags.py), so a default is written once."""

import argparse
from dataclasses import fields

import pytest

from finetune import examples
from finetune.examples import ExampleConfig
from finetune.flags import default_of, show
from finetune.train import TrainConfig, add_arguments, config_from_args
from indexing.errors import UserError

# the flags of `productqa finetune` and `productqa examples`: scripts and docs use these names
FINETUNE_FLAGS = {
    "--help", "--catalog", "--index", "--examples", "--out", "--base-model", "--max-steps", "--epochs", "--no-4bit",
    "--resume", "--merge", "--recipe", "--device", "--quiet", "--batch-size", "--grad-accum", "--lr",
    "--lr-scheduler", "--warmup-steps", "--weight-decay", "--seed", "--lora-r", "--lora-alpha", "--lora-dropout",
    "--max-length", "--eval-steps", "--save-steps", "--logging-steps", "--max-val-examples",
    "--gradient-checkpointing", "--loss-chunk-tokens", "--target-modules", "--no-padding-free",
    "--pad-to-multiple-of", "--max-products", "--sample", "--k", "--p-distractor-only", "--p-not-first",
    "--questions-per-product", "--val-fraction", "--chunk-size", "--p-detail", "--p-not-stated", "--hold-out",
    "--p-draft", "--kinds",
    "--num-processes", "--accelerate-config", "--ddp-timeout"}
EXAMPLES_FLAGS = {
    "--help", "--catalog", "--index", "--out", "--seed", "--fresh", "--quiet", "--max-products", "--sample", "--k",
    "--p-distractor-only", "--p-not-first", "--questions-per-product", "--val-fraction", "--chunk-size",
    "--p-detail", "--p-not-stated", "--hold-out", "--p-draft", "--kinds"}


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


def flags(add) -> dict:
    """dest -> argparse action of the command `add` declares."""
    p = argparse.ArgumentParser()
    add(p)
    return {a.dest: a for a in p._actions}


def flags_parse(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("cls, add, names", [(TrainConfig, add_arguments, FINETUNE_FLAGS),
                                             (ExampleConfig, examples.add_arguments, EXAMPLES_FLAGS)])
def test_every_config_field_has_a_flag(cls, add, names):
    actions = flags(add)
    assert {o for a in actions.values() for o in a.option_strings if o.startswith("--")} == names
    assert [f.name for f in fields(cls) if f.name not in actions] == []


@pytest.mark.parametrize("cls, add", [(TrainConfig, add_arguments), (ExampleConfig, examples.add_arguments)])
def test_flags_show_the_dataclass_defaults(cls, add):
    """The default a flag's help shows is the dataclass field's, and a flag left out is None ("not
    given": the dataclass default applies, or the recipe's value). A default hand-declared on a flag,
    or a help text with another default, fails here."""
    actions = flags(add)
    for f in fields(cls):
        a, default = actions[f.name], default_of(f)
        assert a.default is None, f.name
        if "default_help" in f.metadata:  # only for a default that stands for something (None, -1)
            assert default in (None, -1) and a.help.endswith(f"({f.metadata['default_help']})"), f.name
        elif not isinstance(default, bool) and default not in (None, ""):
            assert a.help.endswith(f"({show(default)})"), f.name
            assert a.type is type(default if not isinstance(default, list) else default[0]), f.name
    assert actions["seed"].help.endswith("(3407)") and actions["k"].help == "retrieved products per prompt (3)"
    if cls is TrainConfig:
        assert actions["lr"].help == "learning rate (2e-4)" and actions["lora_dropout"].help == "LoRA dropout (0)"
        assert actions["max_steps"].help == "optimizer steps (default: one epoch)"
        assert config_from_args(parse([])) == TrainConfig(catalog="c", index="i", out="o")
    else:
        args = flags_parse(add, ["--catalog", "c", "--index", "i", "--out", "o"])
        assert examples.config_from(vars(args)) == ExampleConfig()


def test_switches_and_lists():
    cfg = config_from_args(parse(["--quiet", "--no-padding-free", "--resume", "--target-modules", "q_proj", "v_proj",
                                  "--device", "cpu", "--max-products", "5"]))
    assert (cfg.progress, cfg.padding_free, cfg.resume, cfg.merge, cfg.four_bit) == (False, False, True, False, True)
    assert cfg.target_modules == ["q_proj", "v_proj"] and cfg.device == "cpu" and cfg.max_products == 5
    assert config_from_args(parse([])).progress is True
    with pytest.raises(SystemExit):
        parse(["--device", "tpu"])
    with pytest.raises(SystemExit):
        parse(["--max-products", "5", "--sample", "5"])

"""Command-line flags generated from config dataclasses: a setting's default and one-line help are
written once, on its dataclass field, and `add_fields` turns the fields into argparse flags.

    @dataclass
    class ExampleConfig:
        k: int = option(3, "retrieved products per prompt", group="examples")

    add_fields(parser.add_argument_group("training examples"), ExampleConfig, "examples")
    # -> --k X   retrieved products per prompt (3)

The style of transformers' `HfArgumentParser` (`field(metadata={"help": ...})`, flag names and types
from the field names and type hints), but a small walker of our own rather than HfArgumentParser:
  * `productqa finetune` / `examples` are subparsers that ui/cli.py builds; HfArgumentParser is a
    parser subclass, and its `_add_dataclass_arguments` is private and adds to `self` only;
  * it declares each field twice (`--max_steps` and `--max-steps`) and a bool as `--four_bit [BOOL]`
    plus `--no_four_bit`: other flag names and usage than ours (`--no-4bit`, `--quiet`);
  * it makes the field default the argparse default, so a flag left out cannot be told from one given
    with its default value; "flags override the recipe file" needs that: here every flag defaults to
    None, "not given", and the dataclass fills in what neither the recipe nor a flag set (`given`);
  * importing transformers takes most of a second; `--help` stays instant.

Field metadata (all optional but help; a field without help gets no flag):
    help          one line; the default is appended in parentheses: "learning rate (2e-4)"
    default_help  what to show in the parentheses instead, for a default that stands for something
                  ("default: one epoch" for max_steps -1); with a None or "" default nothing is shown
    metavar       the value's placeholder (X)
    flag          the flag's name when it is not --field-name (--no-4bit, --quiet)
    group         which call of `add_fields` adds it (a key the command's add_arguments uses)
    exclusive     fields with the same key form a mutually exclusive group (--max-products | --sample)
    required      the flag must be given
Types: int, float, str as argparse types; `X | None` as X; `Literal[...]` as choices; `list[X]` as
`nargs="+"`; a bool is a switch: `--name` sets True when the default is False, `--no-name` (or `flag`)
sets False when the default is True.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, Field, field, fields


def option(default=MISSING, help: str = "", *, default_factory=MISSING, **meta) -> Field:
    """A dataclass field with its flag's help (and the other metadata above)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help, **meta})


def default_of(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def show(value) -> str:
    """A default as the help shows it: 3, 0.25, 2e-4 (not 0.0002), 0 (not 0.0), lists space-separated."""
    if isinstance(value, (list, tuple)):
        return " ".join(show(v) for v in value)
    if isinstance(value, float):
        plain = format(value, "g")
        mantissa, exponent = f"{value:e}".split("e")
        sci = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return sci if len(sci) < len(plain) and float(sci) == value else plain
    return str(value)


def flag_name(f: Field) -> str:
    if "flag" in f.metadata:
        return f.metadata["flag"]
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.default is True else f"--{name}"


def flag_help(f: Field) -> str:
    """The field's help with its default: "learning rate (2e-4)"."""
    help_, default = f.metadata["help"], default_of(f)
    if "default_help" in f.metadata:
        return f"{help_} ({f.metadata['default_help']})"
    if isinstance(default, bool) or default is None or default == "" or f.metadata.get("required"):
        return help_
    return f"{help_} ({show(default)})"


def _value_type(hint):
    """(argparse type, choices, is a list) of a field's type hint."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{hint}: only `X | None` unions make a flag")
        hint = args[0]
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), choices, False
    if origin is list:
        (item,) = typing.get_args(hint) or (str,)
        return item, None, True
    return hint, None, False


def add_fields(container, cls, group: str | None = None) -> None:
    """Add a flag for each field of dataclass `cls` whose metadata "group" is `group`, in field order,
    to `container` (a parser, subparser or argument group). Every flag defaults to None ("not given")."""
    hints = typing.get_type_hints(cls)
    exclusive = {}
    for f in fields(cls):
        if f.metadata.get("group") != group or "help" not in f.metadata:
            continue
        target = container
        if "exclusive" in f.metadata:
            key = f.metadata["exclusive"]
            if key not in exclusive:
                exclusive[key] = container.add_mutually_exclusive_group()
            target = exclusive[key]
        kwargs = {"dest": f.name, "default": None, "help": flag_help(f)}
        if f.metadata.get("required"):
            kwargs["required"] = True
        typ, choices, many = _value_type(hints[f.name])
        if typ is bool:
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        else:
            kwargs["type"] = typ
            if choices:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = f.metadata.get("metavar", "X")
            if many:
                kwargs["nargs"] = "+"
        target.add_argument(flag_name(f), **kwargs)


def given(args: argparse.Namespace | dict, cls) -> dict:
    """The fields of `cls` that the command line set (not None), by field name."""
    values = args if isinstance(args, dict) else vars(args)
    return {f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None}

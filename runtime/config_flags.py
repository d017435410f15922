"""Command-line flags from a stage's frozen config dataclass, and the config back from them.

Every stage is a `<Stage>Config` dataclass, `run(config)` and `main(argv)`. Its flags
are its fields, `--field-name` for `field_name`; a field that is itself a dataclass
(say the `TrainConfig` inside `TrainAttentionConfig`) contributes its own fields as
flags of the same level, so a stage's settings and the data it reads share one
command line. A field without a default is a required flag; a flag left out keeps the
field's default, or the value of the named preset (`--preset`) where the stage has
presets for one of its nested settings.

Field metadata `nargs` (with an optional `metavar`) takes a tuple as separate values
(`--weights 0.33 0.67`), and `positional=True` makes a field a positional argument.
Field types map to flags as follows: `bool` is a switch (`--batch-norm`; a field whose
default is `True` gets `--no-<name>` too); `tuple[str, ...]` is a comma-separated list
(`--classes A,B,C`); `X | None` parses as `X`; `Path`, `int`, `float`, `str` as
themselves. Field metadata may set `help`, `choices`, `required=True` (a flag that must be
given although the field has a default), or `flag=False` (not a flag: the field keeps
its default, e.g. a constant of the paper). A nested settings field whose default is an
instance other than its class's defaults (say `TrainConfig(units=64)`) starts from what
that instance sets, and its metadata `not_flags` names inner fields that get no flag
(the stage sets them itself, e.g. the demo's stream and seed of each run).

    @dataclass(frozen=True)
    class ScoringConfig:
        run: tuple[Path, ...] = field(metadata={"help": "run folders"})
        batch_size: int = 64

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ScoringConfig)
    config = config_from_arguments(parser.parse_args(argv), ScoringConfig)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tomllib
import types
import typing
from pathlib import Path

PRESET_FLAG = "preset"
CONFIG_FLAG = "config"  # a settings file (`parse_config`)


def _flag_fields(
    config_type, instance=None
) -> list[tuple[tuple[str, ...], dataclasses.Field, type]]:
    """`(path of field names, field, resolved type)` of every flag, nested ones flattened.
    The fields that a nested settings field's default instance sets (`set_by`) carry its
    values as their defaults, so that `--help` shows them."""
    hints = typing.get_type_hints(config_type)
    overrides = set_by(config_type, instance) if instance is not None else {}
    found = []
    for field in dataclasses.fields(config_type):
        kind = hints[field.name]
        if field.name in overrides:
            field = copy.copy(field)
            field.default = overrides[field.name]
            field.default_factory = dataclasses.MISSING
        if dataclasses.is_dataclass(kind):
            unset = set(field.metadata.get("not_flags", ()))  # fields the stage sets itself
            nested = field.default if dataclasses.is_dataclass(field.default) else None
            found += [
                ((field.name, *path), inner, t)
                for path, inner, t in _flag_fields(kind, nested)
                if path[0] not in unset
            ]
        elif field.metadata.get("flag", True):
            found.append(((field.name,), field, kind))
    return found


def set_by(config_type, instance) -> dict:
    """The fields that `instance` sets: those in which it differs from `config_type()`
    (values its `__post_init__` derives from the others are the same in both, so they
    are derived again from the flags given). All its fields if `config_type()` needs
    arguments."""
    names = [field.name for field in dataclasses.fields(config_type) if field.init]
    try:
        plain = config_type()
    except (TypeError, ValueError):
        return {name: getattr(instance, name) for name in names}
    return {
        name: getattr(instance, name)
        for name in names
        if getattr(instance, name) != getattr(plain, name)
    }


def optional_inner(kind):
    """`X` for `X | None`, else `kind`."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return kind


def _comma_list(item_type):
    def parse(text: str) -> tuple:
        return tuple(item_type(part) for part in text.split(",") if part)

    return parse


def _parser_type(kind):
    kind = optional_inner(kind)
    if typing.get_origin(kind) is tuple:
        return _comma_list(typing.get_args(kind)[0])
    if kind in (int, float, str, Path):
        return kind
    raise TypeError(f"No flag type for {kind!r}; give the field metadata flag=False.")


def _has_default(field: dataclasses.Field) -> bool:
    return (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )


def _format_default(field: dataclasses.Field) -> str:
    """The field's default as it is typed on the command line: a tuple as separate values
    (`nargs`) or comma-separated, a float in its shortest form (0.333333, not
    0.3333333333333333), a path as the path."""

    def one(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    value = field.default
    if isinstance(value, tuple):
        return (" " if "nargs" in field.metadata else ",").join(one(item) for item in value)
    return one(value)


def _help(field: dataclasses.Field) -> str | None:
    """The flag's help with its default; no default shown for a required flag, a None
    default or a switch's False (0 and 0.0 are shown: `0 == False` in Python)."""
    text = field.metadata.get("help")
    if field.default is dataclasses.MISSING or field.default is None or field.default is False:
        return text
    default = _format_default(field)
    return f"{text} (default: {default})" if text else f"default: {default}"


def add_config_arguments(parser: argparse.ArgumentParser, config_type, presets=None) -> None:
    """Adds one flag per field of `config_type` (nested dataclasses flattened).

    Args:
        parser: The stage's parser.
        config_type: The stage's config dataclass.
        presets: Optional `name -> settings` of one nested settings type (or of
            `config_type` itself); adds `--preset` with the first name as default.
    """
    if presets:
        names = list(presets)
        parser.add_argument(
            f"--{PRESET_FLAG}",
            choices=sorted(names),
            default=names[0],
            help=f"named settings, which the other flags override (default: {names[0]})",
        )
    seen = set()
    for path, field, kind in _flag_fields(config_type):
        name = path[-1]
        if name in seen:
            raise TypeError(f"{config_type.__name__}: two fields give the flag --{name}.")
        seen.add(name)
        flag = "--" + name.replace("_", "-")
        options = {"dest": "__".join(path), "help": _help(field)}
        if optional_inner(kind) is bool:
            action = argparse.BooleanOptionalAction if field.default is True else "store_true"
            parser.add_argument(flag, action=action, default=None, **options)
            continue
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        default_metavar = None if "choices" in field.metadata else name.upper()
        options["metavar"] = field.metadata.get("metavar", default_metavar)
        if "nargs" in field.metadata:  # a tuple given as several values: --weights 0.3 0.7
            options["nargs"] = field.metadata["nargs"]
            kind = typing.get_args(optional_inner(kind))[0]
        if field.metadata.get("positional"):
            options.pop("metavar")
            parser.add_argument(options.pop("dest"), type=_parser_type(kind), **options)
            continue
        required = field.metadata.get("required", not _has_default(field))
        parser.add_argument(
            flag, type=_parser_type(kind), default=None, required=required, **options
        )


def _build(config_type, values: dict, path: tuple[str, ...], base, preset):
    """`config_type` from the flags in `values`; a field left out keeps `base`'s value
    (a dataclass instance, or None: the field's default). A nested settings field of
    the preset's type starts from the preset."""
    if base is None and preset is not None and isinstance(preset, config_type):
        base = preset
    hints = typing.get_type_hints(config_type)
    kwargs = {}
    for field in dataclasses.fields(config_type):
        if not field.init:  # derived in __post_init__, never given
            continue
        kind = hints[field.name]
        inner_base = getattr(base, field.name) if base is not None else None
        if dataclasses.is_dataclass(kind):
            inner_path = (*path, field.name)
            inner_values = values
            if inner_base is None and dataclasses.is_dataclass(field.default):
                if not isinstance(preset, kind):  # a preset of their type replaces it
                    # Nested settings take what their field's default instance sets,
                    # under the flags given.
                    set_by_default = {
                        "__".join((*inner_path, name)): value
                        for name, value in set_by(kind, field.default).items()
                        if not dataclasses.is_dataclass(value)
                    }
                    inner_values = {**set_by_default, **values}
            kwargs[field.name] = _build(kind, inner_values, inner_path, inner_base, preset)
            continue
        value = values.get("__".join((*path, field.name)))
        if isinstance(value, list):  # nargs
            value = tuple(value)
        if value is not None:
            kwargs[field.name] = value
        elif base is not None:
            kwargs[field.name] = inner_base
    return config_type(**kwargs)


def config_from_arguments(args: argparse.Namespace, config_type, presets=None):
    """The config of `config_type` that `args` (from `add_config_arguments`) describe:
    each given flag replaces its field; the others keep the preset's value or the default."""
    values = {key: value for key, value in vars(args).items() if value is not None}
    preset = presets[values[PRESET_FLAG]] if presets else None
    return _build(config_type, values, (), None, preset)


def parse_config(config_type, argv=None, *, prog: str, doc: str, presets=None):
    """The config of a stage's command line `argv`: the parser has `prog`, the module
    docstring `doc` (its first paragraph as the description, the rest as the epilog)
    and one flag per field (`add_config_arguments`). A config that rejects the values
    (its `__post_init__`) raises `ValueError`, which `exit_on_error` reports."""
    description, _, epilog = doc.strip().partition("\n\n")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, config_type, presets)
    parser.add_argument(
        f"--{CONFIG_FLAG}",
        type=Path,
        metavar="FILE",
        help="a TOML or JSON file of settings, named as --print-config prints them; "
        "flags given beside it override it",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the settings these flags make, as JSON that --config reads, and exit",
    )
    first, _ = _config_file_parser().parse_known_args(argv)
    if first.config is not None:
        from_file = read_config_file(first.config, config_type)
        parser.set_defaults(**from_file)
        for action in parser._actions:
            if action.dest in from_file:
                action.required = False
    args = parser.parse_args(argv)
    config = config_from_arguments(args, config_type, presets)
    if args.print_config:
        print(json.dumps(config_settings(config), indent=2))
        sys.exit(0)
    return config


def _config_file_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)  # reads --config before the rest
    parser.add_argument(f"--{CONFIG_FLAG}", type=Path, help="the settings file")
    return parser


def config_settings(config) -> dict:
    """The values of every flag of `config`'s stage, nested as its dataclasses are
    (`{"video_root": ..., "train": {"epochs": 30, ...}}`), in JSON's types: what
    `--print-config` prints and `--config` reads back to the same config."""
    settings: dict = {}
    for path, _, _ in _flag_fields(type(config)):
        value = config
        for name in path:
            value = getattr(value, name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(item) if isinstance(item, Path) else item for item in value]
        target = settings
        for name in path[:-1]:
            target = target.setdefault(name, {})
        target[path[-1]] = value
    return settings


def read_config_file(path: Path, config_type) -> dict:
    """The flag values (by their parser `dest`) a `--config` file gives `config_type`'s
    stage. Raises `ValueError` naming the file for a file that cannot be read or parsed,
    or a setting that is not one of the stage's flags."""
    try:
        text = Path(path).read_text()
        data = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        raise ValueError(f"--config {path}: {error}") from None
    fields = {path_: kind for path_, _, kind in _flag_fields(config_type)}
    found = {}

    def walk(table: dict, prefix: tuple[str, ...]) -> None:
        for name, value in table.items():
            key = (*prefix, name)
            if isinstance(value, dict) and key not in fields:
                walk(value, key)
                continue
            if key not in fields:
                raise ValueError(
                    f"--config {path}: {'.'.join(key)} is not a setting of this command "
                    "(--print-config lists them)."
                )
            found["__".join(key)] = _from_file(value, fields[key])

    walk(data, ())
    return found


def _from_file(value, kind):
    """A value read from a TOML or JSON file, as the flag would have parsed it."""
    inner = optional_inner(kind)
    if value is None:
        return None
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        return tuple(Path(v) if item is Path else v for v in value)
    if inner is Path:
        return Path(value)
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def exit_on_error(main, argv=None):
    """Runs a stage's `main(argv)` as a command: a `ValueError` (a bad input, found
    before the work it would spoil) is printed as one line `error: ...` on stderr and
    the process exits with status 2, without a traceback; Ctrl-C, or SIGTERM where a
    worker pool turned it into `runtime.stopping.Terminated`, is one line
    `interrupted` and status 130 or 143 (the stage has unwound: pools shut down, no
    file left half written); an integer result is the exit status."""
    from temporal_attention.runtime.stopping import Terminated

    try:
        result = main(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        print("interrupted: the files written are complete", file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
    sys.exit(result if isinstance(result, int) else 0)

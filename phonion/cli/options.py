"""``--config FILE.yaml`` and ``--set KEY=VALUE`` for every subcommand, through :mod:`phonion.core.config`.

Commands with a structured config of their own (``md``, ``lammps-export``, ``train``, ``learn``) read
``--config`` themselves. Every other subcommand gets the generic form here: the YAML holds a flat mapping of
the command's options by name (``tau_max_ps: 1.0`` or ``tau-max-ps: 1.0``; positionals by their name, e.g.
``files: [run.h5]``), ``--set key=value`` (repeatable) overrides the file, and options given on the command
line override both. Unknown keys are refused with the nearest option suggested, values are converted and
checked like command-line values, all before the command starts.
"""

from __future__ import annotations

import argparse
import sys

from phonion.core.config import apply_overrides, read_yaml, unknown_key_message

__all__ = ["add_config_options", "parse_with_config"]

#: argparse destinations that are plumbing, not settings
_INTERNAL = {"help", "func", "command", "config", "set_overrides", "version"}


def add_config_options(sub: argparse._SubParsersAction) -> None:
    """Give every subcommand without a ``--config`` of its own the generic ``--config`` / ``--set``."""
    for name, p in sub.choices.items():
        if "--config" not in p._option_string_actions:
            p.add_argument("--config", default=None, metavar="YAML",
                           help="settings file: a mapping of this command's options by name "
                                "(command-line options override it)")
            p.set_defaults(_generic_config=True)
        if "--set" not in p._option_string_actions:
            p.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override one setting (repeatable; the value is read as YAML)")


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _convert(action: argparse.Action, value, where: str):
    """A YAML value as argparse would have produced it from the command line (type, nargs, choices)."""
    key = action.dest
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    many = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1) \
        or isinstance(action, argparse._AppendAction)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not many and len(items) != 1:
        raise ValueError(f"{where}: {key} takes one value, got {value!r}")
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise ValueError(f"{where}: {key} takes {action.nargs} values, got {value!r}")
    out = []
    for item in items:
        if action.type is not None and item is not None:
            try:
                item = action.type(item)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: {key}: {exc}") from None
        if action.choices is not None and item not in action.choices:
            raise ValueError(f"{where}: {key} must be one of {', '.join(map(str, action.choices))}, got {item!r}")
        out.append(item)
    return out if many else out[0]


def _requested(parser: argparse.ArgumentParser, argv: list):
    """(subcommand name, its parser, --config, --set list) when a generic-config command asks for them."""
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    i = next((k for k, word in enumerate(argv) if word in sub_action.choices), None)
    if i is None:
        return None
    sub = sub_action.choices[argv[i]]
    if sub.get_default("_generic_config") is not True:
        return None
    own_set = sub._option_string_actions.get("--set")
    if own_set is not None and own_set.dest != "set_overrides":  # the command's own --set (e.g. profile keys)
        return None
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--set", dest="set_overrides", action="append", default=[])
    known, _ = pre.parse_known_args(argv[i + 1:])
    if not known.config and not known.set_overrides:
        return None
    return argv[i], sub, known.config, known.set_overrides


def parse_with_config(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the generic ``--config`` / ``--set`` of the chosen subcommand applied
    (their values become the subcommand's defaults, so options on the command line still win)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    found = _requested(parser, argv)
    if found is None:
        return parser.parse_args(argv)
    command, sub, config, overrides = found
    where = config or "--set"
    data = read_yaml(config) if config else {}
    data = {str(k).replace("-", "_"): v for k, v in apply_overrides(data, overrides).items()}
    actions = {a.dest: a for a in sub._actions if a.dest not in _INTERNAL and a.dest is not argparse.SUPPRESS}
    values = {}
    for key, value in data.items():
        if key not in actions:
            raise ValueError(unknown_key_message(key, actions, f"{where} ({command} settings)"))
        values[key] = _convert(actions[key], value, where)
    saved = [(a, a.required, a.nargs, a.default) for a in actions.values() if a.dest in values]
    try:
        for a in actions.values():
            if a.dest in values:  # given by the config: no longer required on the command line
                a.required = False
                if not a.option_strings and a.nargs == "+":
                    a.nargs = "*"
        sub.set_defaults(**values)
        return parser.parse_args(argv)
    finally:
        for a, required, nargs, default in saved:
            a.required, a.nargs = required, nargs
            sub.set_defaults(**{a.dest: default})

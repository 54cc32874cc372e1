"""One configuration mechanism for every stage: YAML files, ``key.sub=value`` overrides, frozen dataclasses.

* :func:`read_yaml` — the mapping in a ``configs/<stage>.yaml`` file, or one ValueError naming the file
  (missing, not YAML, not a mapping).
* :func:`parse_override` / :func:`apply_overrides` — the one override syntax, ``section.key=value`` (the
  value read as YAML), used by ``--set`` on every command and by the positional overrides of ``train`` and
  ``learn``.
* :func:`check_keys` — unknown keys are refused with the nearest valid key suggested.
* :func:`coerce` / :func:`from_dict` / :func:`load` — a frozen dataclass from a mapping, with YAML /
  command-line values converted to the field types and the dataclass's own ``__post_init__`` checks, so
  the whole config is validated before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from pathlib import Path

__all__ = ["read_yaml", "parse_override", "apply_overrides", "check_keys", "unknown_key_message", "coerce",
           "from_dict", "load"]


def read_yaml(path) -> dict:
    """The mapping in a YAML file (empty file: {}); a missing file, bad YAML or a non-mapping is a ValueError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of settings")
    return data


def parse_override(text: str) -> tuple[str, object]:
    """``"mlip_md.steps=4000"`` → ``("mlip_md.steps", 4000)`` (the value is read as YAML)."""
    import yaml

    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r}: expected key=value or section.key=value, e.g. mlip_md.steps=4000")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"override {text!r}: the value is not valid YAML ({problem})") from None


def apply_overrides(data: dict, overrides) -> dict:
    """A copy of the nested mapping ``data`` with ``["a.b=value", ...]`` (or ``(key, value)`` pairs) applied."""
    data = copy.deepcopy(data)
    for item in overrides or ():
        key, value = item if isinstance(item, tuple) else parse_override(item)
        *parents, last = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key}={value!r}: {p} is not a section")
        node[last] = value
    return data


def unknown_key_message(key: str, known, where: str = "") -> str:
    """"unknown key X (did you mean 'Y'?)" with the nearest of ``known``, or the list of known keys."""
    known = sorted(str(k) for k in known)
    near = difflib.get_close_matches(str(key), known, n=1)
    return (f"{where + ': ' if where else ''}unknown key {key!r}"
            + (f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"))


def check_keys(data: dict, known, where: str = "") -> None:
    """ValueError for the first key of ``data`` not in ``known``, naming the nearest valid key."""
    known = set(known)
    for key in data:
        if key not in known:
            raise ValueError(unknown_key_message(key, known, where))


def coerce(cls, data: dict, converters: dict | None = None) -> dict:
    """Convert YAML / command-line values to the field types of dataclass ``cls`` (ints, floats, tuples).

    ``converters``: ``{type-name prefix: function}`` for strings given where a richer type is expected
    (e.g. ``{"dict": parse_pair_floors}``). ``None`` values are dropped (the field's default applies).
    """
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        kind = str(types.get(key, ""))
        if value is None:
            continue
        conv = next((f for k, f in (converters or {}).items() if kind.startswith(k)), None)
        if conv is not None and isinstance(value, str):
            value = conv(value)
        elif kind.startswith("tuple"):
            value = tuple(int(v) if "int" in kind else float(v) if "float" in kind else v
                          for v in ([value] if isinstance(value, (int, float, str)) else value))
        elif kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif kind.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind == "str" and not isinstance(value, str):
            value = str(value)
        out[key] = value
    return out


def from_dict(cls, data: dict, where: str = "", converters: dict | None = None):
    """``cls(**data)`` for a frozen dataclass: unknown keys refused (nearest suggested), values coerced,
    the dataclass's own checks run; every failure is one ValueError starting with ``where``."""
    check_keys(data, [f.name for f in dataclasses.fields(cls)], where or cls.__name__)
    try:
        return cls(**coerce(cls, data, converters))
    except TypeError as exc:
        raise ValueError(f"{where or cls.__name__}: {exc}") from None


def load(cls, path=None, overrides=(), where: str = "", **given):
    """A ``cls`` from a YAML file (optional), ``key=value`` overrides and keyword values (not None) on top."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    data.update({k: v for k, v in given.items() if v is not None})
    return from_dict(cls, data, where or (str(path) if path is not None else cls.__name__))

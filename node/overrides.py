"""Config keys set by command-line flag or environment variable, over the config file.

Precedence, highest first: a flag (``perpbft start --p2p.listen 0.0.0.0:26656``), an
environment variable (``PERPBFT_P2P__LISTEN=0.0.0.0:26656``), the file
(``config/config.toml``), the default. Containers and systemd units can then change a key
without rewriting the file, as with CometBFT's ``--p2p.laddr`` and ``CMT_*``.

Names: the flag is ``--`` and the dotted key (``--api.listen``, ``--moniker``); the variable is
``PERPBFT_`` and the dotted key upper-cased with ``.`` written ``__`` (``PERPBFT_API__LISTEN``,
``PERPBFT_MONIKER``). Variables that name no key are not config (``PERPBFT_HOME``,
``PERPBFT_NODE``), except that one with ``__`` in it must name a key: a typo in a section's
variable is an error, not a setting silently ignored.

Values are text and are converted by the key's type (an integer, ``true``/``false``, a
comma-separated list), then checked by the same rules as the file's values; an error names
the flag or the variable. Cross-key rules (distinct listen addresses ...) are checked again
on the result.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from node.config import (
    CONFIG_FILE,
    SECTIONS,
    Config,
    ConfigError,
    _check_cross_fields,
    _check_value,
    _dotted,
    load_config,
)

ENV_PREFIX = "PERPBFT_"
ORIGINS = ("flag", "env", "file", "default")


@dataclasses.dataclass(frozen=True, slots=True)
class Override:
    dotted: str  # "p2p.listen", "moniker"
    text: str
    origin: str  # "flag" or "env"
    source: str  # how the user wrote it: "--p2p.listen" or "$PERPBFT_P2P__LISTEN"


def config_fields() -> dict[str, tuple[str, dataclasses.Field[Any]]]:
    """Dotted key -> (section, field), in file order."""
    out: dict[str, tuple[str, dataclasses.Field[Any]]] = {}
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            out[_dotted(section, field.name)] = (section, field)
    return out


def env_name(dotted: str) -> str:
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def flag_name(dotted: str) -> str:
    return "--" + dotted


def env_overrides(environ: Mapping[str, str]) -> list[Override]:
    """The config keys set in ``environ``; raises ConfigError for a ``PERPBFT_X__Y`` that
    names no key."""
    by_env = {env_name(d): d for d in config_fields()}
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        dotted = by_env.get(name)
        if dotted is not None:
            found.append(Override(dotted, environ[name], "env", f"${name}"))
        elif "__" in name:
            raise ConfigError(f"${name} names no config key (keys: `perpbft config show`)")
    return found


def flag_overrides(values: Mapping[str, str | None]) -> list[Override]:
    """Overrides from parsed flags: dotted key -> the flag's value (None: not given)."""
    return [
        Override(dotted, text, "flag", flag_name(dotted))
        for dotted, text in values.items()
        if text is not None
    ]


def typed_value(text: str, field: dataclasses.Field[Any], source: str) -> Any:
    """The TOML value ``text`` stands for, by the key's type (checked by the file's rules)."""
    default = field.default
    if type(default) is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"{source} must be true or false, got {text!r}")
        return text.lower() == "true"
    if type(default) is int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ConfigError(f"{source} must be an integer, got {text!r}") from None
    if type(default) is tuple:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def apply_overrides(config: Config, overrides: Sequence[Override]) -> Config:
    """``config`` with each override applied in order (a later one wins), all checked."""
    fields = config_fields()
    for o in overrides:
        section, field = fields[o.dotted]
        value = _check_value(o.source, o.dotted, typed_value(o.text, field, o.source), field)
        attr = "node" if section == "" else section
        settings = dataclasses.replace(getattr(config, attr), **{field.name: value})
        config = dataclasses.replace(config, **{attr: settings})
    if overrides:
        sources = ", ".join(o.source for o in overrides)
        _check_cross_fields(f"config with {sources}", config)
    return config


def resolve(
    home: Path, flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> tuple[Config, dict[str, str]]:
    """The effective config of ``home`` and, for each dotted key, where its value came from
    (``flag``, ``env``, ``file`` or ``default``)."""
    config = load_config(home)
    from_env = env_overrides(environ)
    from_flags = flag_overrides(flags)
    config = apply_overrides(config, [*from_env, *from_flags])  # flags last: they win
    origins = dict.fromkeys(config_fields(), "default")
    for dotted in file_keys(home):
        origins[dotted] = "file"
    for o in [*from_env, *from_flags]:
        origins[o.dotted] = o.origin
    return config, origins


def file_keys(home: Path) -> list[str]:
    """The dotted keys the home's config file sets (it has been loaded, so it parses)."""
    document = tomllib.loads((home / CONFIG_FILE).read_text(encoding="utf-8"))
    keys: list[str] = []
    for name, value in document.items():
        if isinstance(value, dict):
            keys.extend(_dotted(name, key) for key in value)
        else:
            keys.append(name)
    return keys


def effective_values(config: Config) -> dict[str, Any]:
    """Dotted key -> the effective value (lists as lists), in file order."""
    out: dict[str, Any] = {}
    for dotted, (section, field) in config_fields().items():
        value = getattr(config.node if section == "" else getattr(config, section), field.name)
        out[dotted] = list(value) if isinstance(value, tuple) else value
    return out

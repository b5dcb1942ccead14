"""Tuning xQG's and query expansion's weights on a labelled dev set, with the gain held out.

(Work in progress: the settings file.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xdr.errors import XdrError

SECTIONS = {"augment": ("alpha",), "generate": ("n",), "search": ("beta", "expansion_weight")}


def load_tuned(path: str | Path, section: str) -> dict[str, Any]:
    """The settings ``xdr tune`` chose for one command (``augment`` or ``search``)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise XdrError(f"{p}: cannot read the settings ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get(section, {}), dict):
        raise XdrError(f"{p}: not a settings file written by `xdr tune` (a mapping with a {section!r} mapping)")
    values = data.get(section, {})
    unknown = set(values) - set(SECTIONS[section])
    if unknown:
        raise XdrError(f"{p}: unknown {section} settings {', '.join(sorted(unknown))}")
    return values

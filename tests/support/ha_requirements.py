"""Print the pip requirements of a Home Assistant integration and of everything it depends on (manifest.json
`requirements` over `dependencies`, recursively): what Home Assistant would pip-install at run time.

Run with the Home Assistant venv's python: python ha_requirements.py mqtt [frontend ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import homeassistant.components as components


def requirements(*domains: str) -> list[str]:
    root = Path(components.__path__[0])
    todo, seen, out = list(domains), set(), []
    while todo:
        name = todo.pop()
        if name in seen or not (root / name / "manifest.json").is_file():
            continue
        seen.add(name)
        manifest = json.loads((root / name / "manifest.json").read_text())
        out += [r for r in manifest.get("requirements", []) if r not in out]
        todo += manifest.get("dependencies", [])
    return out


if __name__ == "__main__":
    print(*requirements(*sys.argv[1:]))

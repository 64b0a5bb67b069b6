"""Compare a converted model with the sha256 recorded in models/expected.json: `python -m edge.convert.expected MODEL`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge import paths
from edge.fsutil import sha256_file

EXPECTED = paths.REPO_ROOT / "models" / "expected.json"


def check(model: Path, expected: Path = EXPECTED) -> tuple[bool, str]:
    """(same, one line saying so); a different TensorFlow is named as the likely reason."""
    record = json.loads(expected.read_text(encoding="utf-8"))
    actual = sha256_file(model)
    if actual == record["sha256"]:
        return True, f"{model}: sha256 {actual[:16]}… is the expected build ({expected.name})"
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        version = dist_version("tensorflow")
    except PackageNotFoundError:
        version = "unknown"
    why = f"TensorFlow {version} here, {record['tensorflow']} recorded" if version != record["tensorflow"] else "same TensorFlow: please report it"
    return False, f"{model}: sha256 {actual[:16]}… differs from the expected {record['sha256'][:16]}… in {expected} ({why})"


def main(argv: list[str]) -> int:
    model = Path(argv[0]) if argv else paths.default_model()
    same, line = check(model)
    print(line, file=sys.stdout if same else sys.stderr)
    return 0  # says so; a different build is not an error (another TensorFlow may legitimately differ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

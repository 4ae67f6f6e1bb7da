"""Print the README's quick-start commands, one per line, exactly as the README shows them.

`.ci/run` runs what this prints, so CI can only ever run what a reader of the README runs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def quickstart(readme: str) -> list[str]:
    """The lines of the first ```bash block under the README's "## Quick start" heading."""
    start = readme.index("## Quick start\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else None]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    if match is None:
        raise SystemExit("README.md: no ```bash block under '## Quick start'")
    return [line for line in match.group(1).splitlines() if line.strip()]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print("\n".join(quickstart(path.read_text())))

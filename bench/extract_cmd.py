"""Print {"title", "summary"} as one JSON line per HTML path (extraction_eval.py contract)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.extract import extract_meta  # noqa: E402


def main(paths: list[str]) -> int:
    """Extract every page in `paths` and print the results."""
    out = []
    for path in paths:
        try:
            body = Path(path).read_bytes()
        except OSError:
            body = b""
        meta = extract_meta(body)
        out.append(json.dumps({"title": meta.title, "summary": meta.summary}, ensure_ascii=False))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

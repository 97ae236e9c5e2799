"""A stand-in for the GitHub CLI (`gh`), the one part of a workflow the tests cannot reach.

It keeps issues and labels in a JSON state file (FAKE_GH_STATE), appends every call's arguments
to FAKE_GH_LOG (one JSON list a line) and does what gh does for the subcommands the project's
workflows use; anything else exits 1 with a message, so a workflow change cannot pass unseen.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: The --jq expressions the workflows use, evaluated here (gh has jq built in).
JQ = {".[0].number // empty": lambda rows: str(rows[0]["number"]) if rows else ""}


def _opts(args: list[str], flags: frozenset[str] = frozenset()) -> tuple[list[str], dict[str, str]]:
    """Positional arguments and --option values (`flags` take no value)."""
    pos: list[str] = []
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if eq:
                opts[name] = value
            elif name in flags:
                opts[name] = ""
            else:
                i += 1
                if i == len(args):
                    sys.exit(f"fake gh: --{name} needs a value")
                opts[name] = args[i]
        else:
            pos.append(a)
        i += 1
    return pos, opts


#: GitHub refuses longer issue bodies and comments ("body is too long").
MAX_BODY = 65536


def _body(opts: dict[str, str]) -> str:
    if "body-file" in opts:
        data = Path(opts["body-file"]).read_bytes()
        try:
            body = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            sys.exit(f"fake gh: the body is not UTF-8 ({exc})")
    else:
        body = opts.get("body", "")
    if len(body) > MAX_BODY:
        sys.exit(f"fake gh: body is too long (maximum is {MAX_BODY} characters)")
    return body


def _issue(state: dict[str, Any], number: str) -> dict[str, Any]:
    for issue in state["issues"]:
        if str(issue["number"]) == number:
            return issue  # type: ignore[no-any-return]
    sys.exit(f"fake gh: no issue {number}")


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["FAKE_GH_STATE"])
    with open(os.environ["FAKE_GH_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(argv, ensure_ascii=False) + "\n")
    if not os.environ.get("GH_TOKEN"):
        sys.exit("fake gh: GH_TOKEN is not set (gh would ask to log in)")
    state = (
        json.loads(state_path.read_text(encoding="utf-8"))
        if state_path.exists()
        else {"issues": [], "labels": {}}
    )
    cmd = argv[:2]
    if cmd == ["label", "create"]:
        pos, opts = _opts(argv[2:], frozenset({"force"}))
        if pos[0] in state["labels"] and "force" not in opts:
            sys.exit(f"fake gh: label {pos[0]!r} already exists")
        state["labels"][pos[0]] = {k: v for k, v in opts.items() if k != "force"}
    elif cmd == ["issue", "list"]:
        _, opts = _opts(argv[2:])
        rows = [
            i
            for i in sorted(state["issues"], key=lambda i: -i["number"])  # newest first
            if opts.get("state", "open") in (i["state"], "all")
            and ("label" not in opts or opts["label"] in i["labels"])
        ]
        fields = opts.get("json", "number").split(",")
        out = [{f: i[f] for f in fields} for i in rows]
        if "jq" in opts:
            if opts["jq"] not in JQ:
                sys.exit(f"fake gh: --jq {opts['jq']!r} is not simulated")
            print(JQ[opts["jq"]](out))
        else:
            print(json.dumps(out))
    elif cmd == ["issue", "create"]:
        _, opts = _opts(argv[2:])
        labels = [opts["label"]] if "label" in opts else []
        for label in labels:
            if label not in state["labels"]:
                sys.exit(f"fake gh: could not add label: {label!r} not found")
        number = max((i["number"] for i in state["issues"]), default=0) + 1
        state["issues"].append(
            {
                "number": number,
                "title": opts["title"],
                "body": _body(opts),
                "labels": labels,
                "state": "open",
                "comments": [],
                "edits": 0,
            }
        )
        print(f"https://github.com/{os.environ.get('GH_REPO', 'o/r')}/issues/{number}")
    elif cmd == ["issue", "edit"]:
        pos, opts = _opts(argv[2:])
        issue = _issue(state, pos[0])
        issue["body"] = _body(opts)
        issue["edits"] += 1
    elif cmd == ["issue", "close"]:
        pos, opts = _opts(argv[2:])
        issue = _issue(state, pos[0])
        issue["state"] = "closed"
        if "comment" in opts:
            issue["comments"].append(opts["comment"])
    else:
        sys.exit(f"fake gh: {' '.join(argv[:2])!r} is not simulated")
    state_path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A worker process of `crawler check`: `python -m crawler.workproc RUN PARENT`, the run's
settings as JSON on stdin, the database in CRAWLER_DB (crawler.pipeline starts it).

It works as `crawler worker --run RUN --settings - --parent PARENT` does, and loads only what a
worker runs (the engine, the fetch and extract stages, the store): not the command line, its
options and configuration file, or the reports. Errors end it as they end `crawler`: one line
on stderr (the parent shows the last one) and the exit code.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from crawler.db import parse_db
from crawler.engine import settings_from_json
from crawler.pipeline import work_on_run
from crawler.start import finish


def main(argv: list[str]) -> int:
    """RUN PARENT: work on the run until it is done, or until the parent is gone."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    run_id, parent = (int(x) for x in argv)
    settings = settings_from_json(json.load(sys.stdin))
    return work_on_run(parse_db(os.environ["CRAWLER_DB"]), run_id, settings, parent, once=True)


if __name__ == "__main__":
    finish(lambda: main(sys.argv[1:]))

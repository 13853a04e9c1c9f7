"""Plumbing shared by the jobs: argument parsing, config loading, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from fakeface.config import Config, load_config
from fakeface.errors import FakefaceError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class JobArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def base_parser(prog: str, description: str) -> JobArgumentParser:
    """A parser with the flags every job takes: --conf and repeatable --set."""
    parser = JobArgumentParser(prog=prog, description=description)
    parser.add_argument("--conf", default=None, help="config file, e.g. conf/local.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )
    return parser


def load_job_config(args: argparse.Namespace) -> Config:
    """The config named by --conf (default: conf/local.yaml when present) plus --set."""
    path = args.conf
    if path is None:
        default = Path(__file__).resolve().parent.parent / "conf" / "local.yaml"
        path = str(default) if default.is_file() else None
    return load_config(path, args.overrides)


def parse_run_date(text: str | None) -> str:
    """YYYY-MM-DD (default: today, UTC); anything else is a one-line error."""
    if text is None:
        return dt.datetime.now(dt.UTC).date().isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise FakefaceError(f"bad --run-date {text!r}: expected YYYY-MM-DD") from None


def require_dir(path: str, flag: str) -> str:
    """An existing input folder (local paths only; URIs are checked by Spark)."""
    if "://" not in path and not os.path.isdir(path):
        raise FakefaceError(f"{flag} folder not found: {path}")
    return path


def setup_logging(verbose: bool = False) -> None:
    """Plain timestamped logs on stderr; quiet the chatty libraries."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("py4j", "urllib3", "alembic", "matplotlib", "PIL", "absl", "petastorm"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # petastorm 0.13 on pyarrow 14 warns on every read about APIs it still uses.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*unicode strings back to bytes.*")


def run_job(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a job's main; a FakefaceError becomes one line on stderr and its exit code."""
    try:
        return main(argv)
    except FakefaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

"""The `fakeface` console script: `fakeface report ...`, `fakeface synth ...`.

Kept apart from `fakeface.cli` (the jobs' shared plumbing), which the tools it dispatches to
import themselves.
"""

from __future__ import annotations

from fakeface.cli import JobArgumentParser, run_job


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a tool's own main."""
    parser = JobArgumentParser(prog="fakeface", description="fakeface tools")
    parser.add_argument("command", choices=["report", "synth"])
    args, rest = parser.parse_known_args(argv)
    if args.command == "synth":
        from fakeface import synth

        return synth.main(rest)
    from fakeface import report

    return run_job(report.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())

"""``facskit compare RESULTS... --published NAMES --out DIR``: runs and the papers' tables side by side.

    facskit compare runs/cv-scc runs/cv-bmvc nosc=runs/cv-noscc/metrics.json \
        --published bmvc2018-bp4d,scc-disfa --out runs/compare

RESULTS are metrics JSON files (facskit evaluate --out), crossval folders or LABEL=PATH. Writes
compare.md (one table: a row per result and metric, AUs as columns, Mean last), compare.json and
compare.png (ICC per AU, bars). `--published list` prints the shipped published tables.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", nargs="*", metavar="RESULT", help="metrics JSON, crossval folder or LABEL=PATH"
    )
    parser.add_argument(
        "--published",
        default="",
        metavar="NAMES",
        help="comma-separated published tables (bmvc2018-bp4d, ...); 'list' lists them",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="folder to write compare.md, compare.json and compare.png to"
    )
    parser.add_argument("--quiet", action="store_true", help="print the table only (not the files written)")


def run(args: argparse.Namespace) -> int:
    from facskit.errors import UsageError
    from facskit.eval.compare import compare_markdown, load_result, write_compare
    from facskit.eval.published import list_published, published_results

    names = [n.strip() for n in args.published.split(",") if n.strip()]
    if names == ["list"]:
        for name in list_published():
            entry = published_results(name)
            print(f"{name}: {entry['label']} - {entry['source']['status']}")
        return 0
    results = [load_result(path) for path in args.results] + [published_results(name) for name in names]
    if not results:
        raise UsageError("nothing to compare: give result files or --published names")
    print(compare_markdown(results))
    if args.out:
        paths = write_compare(results, args.out)
        if not args.quiet:
            print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0

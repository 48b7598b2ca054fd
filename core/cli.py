"""The `histo` command. Exit codes: 0 success, 1 run failed, 2 invalid recipe or usage, 3 internal error.

User errors print one message per problem and no traceback; `HISTO_DEBUG=1` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import HistoError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3

# piped output keeps one row per line, so `histo plugins | grep` works
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


def _report_plugin_failures() -> None:
    from .manager import get_plugins

    for failure in get_plugins().failures:
        err.print(f"[yellow]warning:[/] {failure}", markup=True, highlight=False)


def cmd_run(args: argparse.Namespace) -> int:
    from .recipe import load_recipe
    from .run import run_recipe

    _report_plugin_failures()
    loaded = load_recipe(args.recipe, args.set)
    result = run_recipe(loaded, args.out, quiet=args.quiet, argv=["histo", *sys.argv[1:]])
    for stage in result.summary["stages"]:
        line = f"{stage['id']:<16} {stage['status']:<8}"
        if "seconds" in stage:
            line += f" {stage['seconds']:>8.1f}s"
        if stage.get("failures"):
            line += f"  {stage['failures']} skipped (see failures.jsonl)"
        if stage.get("error"):
            line += f"  {stage['error']}"
        out.print(line, highlight=False, markup=False)
    out.print(f"run directory: {result.run_dir}", highlight=False, markup=False)
    if not result.ok:
        return EXIT_FAILED
    if loaded.recipe.strict and result.failures:
        err.print(
            f"strict: {result.failures} item(s) were skipped; see the failures.jsonl files", markup=False
        )
        return EXIT_FAILED
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    _report_plugin_failures()
    loaded = load_recipe(args.recipe, args.set)
    out.print(
        f"{args.recipe}: valid ({len(loaded.stages)} stages: {', '.join(s.id for s in loaded.stages)})",
        markup=False,
        highlight=False,
    )
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from .manager import get_plugins

    plugins = get_plugins()
    rows = [
        {
            "kind": e.kind,
            "name": e.name,
            "package": e.package,
            "version": e.version,
            "plugin": e.plugin,
            "description": e.spec.description,
        }
        for e in plugins.entries()
    ]
    failures = [
        {"plugin": f.plugin, "package": f.package, "phase": f.phase, "message": f.message}
        for f in plugins.failures
    ]
    if args.json:
        print(json.dumps({"components": rows, "failures": failures}, indent=2))
        return EXIT_OK
    table = Table("kind", "name", "package", "version", "description", box=None, pad_edge=False)
    for row in rows:
        table.add_row(row["kind"], row["name"], row["package"], row["version"], row["description"])
    out.print(table)
    for failure in plugins.failures:
        err.print(f"warning: {failure}", markup=False, highlight=False)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """Tile and embed new slides as the run did, then run its WSI-only model (default plugins)."""
    from .recipe import load_recipe
    from .run import run_recipe

    try:
        from histo.plugins.training.predict_recipe import predict_recipe
    except ImportError as exc:  # the default plugins are part of the distribution; this is a broken install
        raise HistoError(f"`histo predict` needs histo's default plugins: {exc}") from None
    _report_plugin_failures()
    recipe = predict_recipe(args.run_dir, args.slides, args.stage, args.mpp)
    out_dir = args.out or args.run_dir / "predictions" / Path(args.slides).stem
    loaded = load_recipe(recipe, args.set)
    result = run_recipe(loaded, out_dir, quiet=args.quiet, argv=["histo", *sys.argv[1:]])
    for stage in result.summary["stages"]:
        out.print(f"{stage['id']:<16} {stage['status']:<8} {stage.get('error', '')}", markup=False)
    if not result.ok:
        return EXIT_FAILED
    folder = out_dir / "stages" / "predict"
    out.print(
        f"predictions: {folder / 'slide_predictions.csv'}, {folder / 'patient_predictions.csv'}",
        markup=False,
        highlight=False,
    )
    if (out_dir / "stages" / "heatmaps").is_dir():
        out.print(f"heatmaps: {out_dir / 'stages' / 'heatmaps'}", markup=False, highlight=False)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the run's self-contained HTML report (default plugins)."""
    run_dir: Path = args.run_dir
    if not ((run_dir / "summary.json").is_file() or (run_dir / "recipe.yaml").is_file()):
        err.print(
            f"error: {run_dir} is not a run directory (no summary.json or recipe.yaml); "
            "give the --out folder of a `histo run`",
            markup=False,
            highlight=False,
        )
        return EXIT_INVALID
    try:
        from histo.plugins.report import build_report
    except ImportError as exc:  # the default plugins are part of the distribution; this is a broken install
        raise HistoError(f"`histo report` needs histo's default plugins: {exc}") from None
    path = build_report(run_dir, args.output)
    out.print(f"report: {path}", markup=False, highlight=False)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from .reference import markdown_reference

        text = markdown_reference().rstrip("\n")
    else:
        from .schema import recipe_schema

        text = json.dumps(recipe_schema(), indent=2)
    if args.output:
        from .io import write_text_atomic

        write_text_atomic(args.output, text + "\n")
    else:
        print(text)
    return EXIT_OK


def cmd_cohort(args: argparse.Namespace) -> int:
    from histo.plugins.cohort.tcga.command import main as cohort_main

    return cohort_main(args.rest, say=lambda line: out.print(line, highlight=False, markup=False))


def _add_cohort_command(sub: Any) -> None:
    """`histo cohort tcga ...`: the flags are parsed by the plugin (importing it costs pandas, so only
    when the command runs); docs/cohorts.md."""
    cohort = sub.add_parser("cohort", help="build cohort tables from a downloaded cohort (TCGA / GDC)")
    kinds = cohort.add_subparsers(dest="cohort_kind", required=True, metavar="KIND")
    tcga = kinds.add_parser(
        "tcga",
        help="slides by barcode, GDC sample sheets, GDC/cBioPortal clinical, Xena/STAR expression "
        "(`histo cohort tcga --help`)",
        add_help=False,
        prefix_chars="+",  # every flag goes to the plugin's own parser
    )
    tcga.add_argument("rest", nargs=argparse.REMAINDER)
    tcga.set_defaults(handler=cmd_cohort)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="histo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"histo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def recipe_command(
        name: str, help_text: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("recipe", type=Path, help="recipe YAML file")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a recipe value, e.g. --set stages.extract.params.batch_size=64",
        )
        p.set_defaults(handler=handler)
        return p

    run = recipe_command("run", "run a recipe's stages into a run directory", cmd_run)
    run.add_argument("--out", type=Path, help="run directory (default: runs/<recipe name>)")
    run.add_argument("--quiet", action="store_true", help="log to the run directory only")
    recipe_command("validate", "check a recipe without running it (exit 0 valid, 2 invalid)", cmd_validate)

    predict = sub.add_parser(
        "predict", help="run a finished run's WSI-only model on new slides (no transcriptome needed)"
    )
    predict.add_argument("run_dir", type=Path, help="the run directory of a finished `histo run`")
    predict.add_argument("slides", type=Path, help="a slide file or a folder of slides")
    predict.add_argument("--stage", help="which WSI-only train stage to use (default: the last one)")
    predict.add_argument("--mpp", type=float, help="microns per pixel, for slides whose files lack it")
    predict.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/predictions/<slides>)")
    predict.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override the generated recipe, e.g. --set stages.extract.params.batch_size=16",
    )
    predict.add_argument("--quiet", action="store_true", help="log to the output folder only")
    predict.set_defaults(handler=cmd_predict)

    report = sub.add_parser("report", help="write a run's self-contained HTML report (report.html)")
    report.add_argument("run_dir", type=Path, help="the run directory of a `histo run`")
    report.add_argument("--output", "-o", type=Path, help="output file (default: RUN_DIR/report.html)")
    report.set_defaults(handler=cmd_report)

    plugins = sub.add_parser("plugins", help="list installed components by kind")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)

    schema = sub.add_parser("schema", help="print the JSON Schema of recipes for the installed plugins")
    schema.add_argument("--output", "-o", type=Path, help="write to a file instead of stdout")
    schema.add_argument("--markdown", action="store_true", help="a readable reference instead of JSON Schema")
    schema.set_defaults(handler=cmd_schema)
    _add_cohort_command(sub)
    _add_import_checkpoint_command(sub)
    return parser


def _add_import_checkpoint_command(sub: Any) -> None:
    """`histo import-checkpoint` (the paper's plugins; absent when they are not installed)."""
    try:
        from histo.plugins.paper.import_checkpoint import add_command
    except ImportError:
        return
    add_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HistoError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: rerun the same command to finish only what is missing", markup=False)
        return 130
    except Exception as exc:
        if os.environ.get("HISTO_DEBUG"):
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "this is a bug in histo or a plugin; rerun with HISTO_DEBUG=1 for the traceback",
            markup=False,
            highlight=False,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

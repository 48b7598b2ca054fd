"""The `histo` command.

Exit codes, one rule for every command:
  0  success
  1  the run could not finish for a reason you can act on: a stage failed on bad input, the
     environment (disk full, read-only folder), or an exception in a third-party plugin's code (named
     with its package and version); with `strict: true`, also any skipped item
  2  invalid recipe or usage: nothing ran
  3  internal error in histo itself (a bug): the message says where the traceback was written
  130  interrupted (Ctrl-C): rerun the same command to finish what is missing

User errors print one message per problem and no traceback; `HISTO_DEBUG=1` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import HistoError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
WAIT_HELP = "if another histo command is using the run directory, wait for it instead of failing"

# piped output keeps one row per line, so `histo plugins | grep` works
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


def _report_plugin_failures() -> None:
    from .manager import get_plugins

    for failure in get_plugins().failures:
        err.print(f"[yellow]warning:[/] {failure}", markup=True, highlight=False)


def _lock(run_dir: Path, args: argparse.Namespace) -> AbstractContextManager[None]:
    """One command at a time in a run directory (see histo.run.lock); `--wait` queues instead."""
    from .run.lock import command_lock

    def note(text: str) -> None:
        err.print(f"note: {text}", markup=False, highlight=False)

    return command_lock(run_dir, wait=getattr(args, "wait", False), note=note)


def cmd_run(args: argparse.Namespace) -> int:
    from .recipe import load_recipe
    from .run import run_recipe
    from .run.preflight import check_inputs_or_raise

    _report_plugin_failures()
    loaded = load_recipe(args.recipe, args.set)
    check_inputs_or_raise(loaded, args.out)  # every input problem at once, before any stage runs
    with _lock(args.out or Path("runs") / loaded.name, args):
        result = run_recipe(
            loaded, args.out, quiet=args.quiet, argv=["histo", *sys.argv[1:]], rerun=args.rerun
        )
    for stage in result.summary["stages"]:
        line = f"{stage['id']:<16} {stage['status']:<8}"
        if "seconds" in stage:
            line += f" {stage['seconds']:>8.1f}s"
        if stage.get("failures"):
            line += f"  {stage['failures']} skipped (see failures.jsonl)"
        if stage.get("error"):
            line += f"  {stage['error']}"
        out.print(line.rstrip(), highlight=False, markup=False)  # no padding at the end of a stage row
    out.print(f"run directory: {result.run_dir}", highlight=False, markup=False)
    if not result.ok:
        return _failed_run_exit(result.summary)
    if loaded.recipe.strict and result.failures:
        err.print(
            f"strict: {result.failures} item(s) were skipped; see the failures.jsonl files", markup=False
        )
        return EXIT_FAILED
    return EXIT_OK


def _failed_run_exit(summary: dict[str, Any]) -> int:
    """3 when a stage hit a bug in histo itself, else 1 (see the module docstring)."""
    internal = [s for s in summary.get("stages", []) if s.get("error_kind") == "internal"]
    return EXIT_INTERNAL if internal else EXIT_FAILED


def cmd_validate(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    _report_plugin_failures()
    loaded = load_recipe(args.recipe, args.set)
    if args.inputs:
        from .run.preflight import check_inputs_or_raise

        check_inputs_or_raise(loaded)
    out.print(
        f"{args.recipe}: valid{' (inputs checked)' if args.inputs else ''} "
        f"({len(loaded.stages)} stages: {', '.join(s.id for s in loaded.stages)})",
        markup=False,
        highlight=False,
    )
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from .manager import get_plugins
    from .plugin_listing import component_rows

    plugins = get_plugins()
    rows = component_rows(plugins)
    failures = [
        {"plugin": f.plugin, "package": f.package, "phase": f.phase, "message": f.message}
        for f in plugins.failures
    ]
    if args.json:
        print(json.dumps({"components": rows, "failures": failures}, indent=2))
        return EXIT_OK
    table = Table("kind", "name", "package", "version", "description", box=None, pad_edge=False)
    for row in rows:
        description = row["description"] if row["usable"] else f"UNUSABLE: {row['problem']}"
        table.add_row(row["kind"], row["name"], row["package"], row["version"], description)
    out.print(table, markup=False, highlight=False)
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
    with _lock(args.run_dir, args), _lock(out_dir, args):  # reads the run's models, writes beside them
        result = run_recipe(loaded, out_dir, quiet=args.quiet, argv=["histo", *sys.argv[1:]])
    for stage in result.summary["stages"]:
        skipped = f"{stage['failures']} skipped (see failures.jsonl)  " if stage.get("failures") else ""
        out.print(f"{stage['id']:<16} {stage['status']:<8} {skipped}{stage.get('error', '')}", markup=False)
    from histo.plugins.training.predict_notes import predict_notes

    for note in predict_notes(out_dir):
        err.print(f"note: {note}", markup=False, highlight=False)
    if not result.ok:
        return _failed_run_exit(result.summary)
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
    with _lock(run_dir, args):
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
def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Write a plugin package from the scaffold (see docs/plugins.md, "Starting a package")."""
    from .scaffold import new_plugin

    root = new_plugin(args.name, args.kind, args.out)
    out.print(f"wrote {root}; next: pip install -e {root} && python -m pytest {root}", markup=False)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    doc = (__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog="histo",
        description="Multi-modal learning on whole-slide images and transcriptomics, from YAML recipes.",
        epilog=doc[doc.index("Exit codes") :] if "Exit codes" in doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    run.add_argument("--wait", action="store_true", help=WAIT_HELP)
    run.add_argument(
        "--rerun",
        action="append",
        default=[],
        metavar="STAGE",
        help="run this stage even if cached, and every stage that depends on it (repeatable)",
    )
    validate = recipe_command(
        "validate", "check a recipe without running it (exit 0 valid, 2 invalid)", cmd_validate
    )
    validate.add_argument(
        "--inputs",
        action="store_true",
        help="also check the input files: they exist and parse, named columns exist, ids and classes "
        "match (exit 1 listing every problem)",
    )

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
    predict.add_argument("--wait", action="store_true", help=WAIT_HELP)
    predict.set_defaults(handler=cmd_predict)

    report = sub.add_parser("report", help="write a run's self-contained HTML report (report.html)")
    report.add_argument("run_dir", type=Path, help="the run directory of a `histo run`")
    report.add_argument("--output", "-o", type=Path, help="output file (default: RUN_DIR/report.html)")
    report.add_argument("--wait", action="store_true", help=WAIT_HELP)
    report.set_defaults(handler=cmd_report)

    plugins = sub.add_parser("plugins", help="list installed components by kind")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)

    schema = sub.add_parser("schema", help="print the JSON Schema of recipes for the installed plugins")
    schema.add_argument("--output", "-o", type=Path, help="write to a file instead of stdout")
    schema.add_argument("--markdown", action="store_true", help="a readable reference instead of JSON Schema")
    schema.set_defaults(handler=cmd_schema)
    _add_cohort_command(sub)

    new = sub.add_parser("new", help="start a plugin package from a template")
    new_what = new.add_subparsers(dest="what", required=True, metavar="WHAT")
    new_plugin = new_what.add_parser(
        "plugin", help="a package with one component, its config, README and tests (histo.testing)"
    )
    new_plugin.add_argument("name", help="e.g. lab-mil: package histo-lab-mil, component lab_mil")
    new_plugin.add_argument("--kind", required=True, choices=_scaffold_kinds(), help="component kind")
    new_plugin.add_argument("--out", type=Path, default=Path("."), help="parent folder (default: here)")
    new_plugin.set_defaults(handler=cmd_new_plugin)
    _add_import_checkpoint_command(sub)
    return parser


def _scaffold_kinds() -> list[str]:
    from .scaffold import KINDS

    return list(KINDS)


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
        from .run.environment import as_environment_fault

        fault = as_environment_fault(exc)  # a full disk or read-only --out: the user's to fix, not a bug
        if fault is not None:
            err.print(f"error: {fault}", markup=False, highlight=False)
            return fault.exit_code
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    """An exception outside a stage: write its traceback to a file, say whose code raised and exit
    1 (a third-party plugin, or the environment) or 3 (a bug in histo)."""
    import tempfile
    import traceback

    from .manager import get_plugins
    from .run.blame import blame

    where = "rerun with HISTO_DEBUG=1 to see it"
    try:  # the environment may be what failed (a full disk): then say how to see the traceback
        fd, path = tempfile.mkstemp(prefix="histo-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        where = f"{path} (or rerun with HISTO_DEBUG=1)"
    except OSError:
        pass
    found = blame(exc, get_plugins(), traceback_at=where)
    err.print(f"error: {found.message}", markup=False, highlight=False)
    return found.exit_code


if __name__ == "__main__":
    sys.exit(main())

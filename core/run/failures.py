"""The failures of a stage, summarised: one log line per reason with a count, not one per item.

Hundreds of per-patient lines bury the one that matters; `failures.jsonl` keeps every record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

MAX_REASONS = 8  # lines in the summary; the rest are counted in one more line
EXAMPLES = 3  # item names shown per reason


def _pattern(record: dict[str, Any]) -> str:
    """The reason with the item's own name taken out, so 'slide a: ...' and 'slide b: ...' group."""
    reason = str(record.get("reason", ""))
    item = str(record.get("item", ""))
    return reason.replace(item, "<item>") if item and len(item) > 1 else reason


def summarise_failures(records: Iterable[dict[str, Any]]) -> list[str]:
    """Lines like `12 skipped: no expression row in omics.csv (e.g. P01, P02, P07)`, commonest first."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    first_reason: dict[str, str] = {}
    for record in records:
        key = _pattern(record)
        counts[key] += 1
        examples.setdefault(key, [])
        first_reason.setdefault(key, str(record.get("reason", "")))
        if len(examples[key]) < EXAMPLES:
            examples[key].append(str(record.get("item", "")))
    lines = []
    for key, count in counts.most_common(MAX_REASONS):
        shown = ", ".join(examples[key]) + (", ..." if count > EXAMPLES else "")
        # A reason met once reads best as it was written, with the item's real name in it.
        reason = key if count > 1 else first_reason[key]
        lines.append(f"{count} skipped: {reason} ({'e.g. ' if count > 1 else ''}{shown})")
    rest = counts.most_common()[MAX_REASONS:]
    if rest:
        lines.append(f"{sum(c for _, c in rest)} skipped for {len(rest)} other reason(s)")
    if lines:
        lines.append("every skipped item and why: failures.jsonl in the stage folder")
    return lines

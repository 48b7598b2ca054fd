"""A small plugin used by the core tests: two stages that pass numbers through files, and a
component kind with parameters, so recipes, caching and references are exercised for real."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec, hookimpl
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.io import write_json_atomic
from histo.recipe import InputPath, StageRef, TokenAggregatorRef

CALLS: list[str] = []  # stage ids in the order they actually ran (not cached)


class TopK:
    def __init__(self, config: TopKConfig) -> None:
        self.k = config.k

    def __call__(self, values: list[float]) -> list[float]:
        return sorted(values, reverse=True)[: self.k]


class TopKConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(2, ge=1, description="how many values to keep")


class WriteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(5, ge=0, description="how many numbers to write")
    source: InputPath | None = None
    fail: bool = False
    skip_every: int = 0


class WriteNumbers(Stage[WriteConfig]):
    def run(self, ctx: StageContext) -> None:
        CALLS.append(ctx.stage_id)
        if self.config.fail:
            raise HistoError("asked to fail")
        numbers = list(range(self.config.count))
        if self.config.source is not None:
            numbers += [int(x) for x in self.config.source.read_text().split()]
        for i in numbers:
            if self.config.skip_every and i % self.config.skip_every == 0:
                ctx.record_failure(f"item-{i}", "skipped on purpose")
        write_json_atomic(ctx.out_dir / "numbers.json", numbers)
        ctx.add_metrics(count=len(numbers))


class SumConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    numbers: StageRef
    keep: TokenAggregatorRef = TokenAggregatorRef(name="toy_topk")


class SumNumbers(Stage[SumConfig]):
    def run(self, ctx: StageContext) -> None:
        CALLS.append(ctx.stage_id)
        numbers = json.loads((ctx.stage_dir(self.config.numbers) / "numbers.json").read_text())
        kept = self.config.keep.build()(numbers)
        ctx.add_metrics(total=sum(kept))
        (ctx.out_dir / "total.txt").write_text(str(sum(kept)))


@hookimpl
def histo_stages() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec("write_numbers", WriteNumbers, WriteConfig, "write 0..count-1 to numbers.json"),
        ComponentSpec("sum_numbers", SumNumbers, SumConfig, "sum the kept numbers of an earlier stage"),
    ]


@hookimpl
def histo_token_aggregators() -> Iterable[ComponentSpec[Any]]:
    return [ComponentSpec("toy_topk", TopK, TopKConfig, "keep the k largest values")]

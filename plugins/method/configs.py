"""Configs of the method's token aggregators, gradient coordinators and distillers.

Pydantic only (no torch), so that `histo plugins` and `histo validate` stay fast.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from histo.recipe.bounds import Seed

DEFAULT_TOKENS = 2  # the reference keeps ceil(0.0008 * 2,500) = 2 merged tokens


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DpcKnnConfig(_Config):
    """TCFormer-style cluster-merge: DPC-kNN centres, nearest-centre assignment, score-weighted merge."""

    tokens: int | None = Field(
        None,
        ge=1,
        description="Number K of merged output tokens (a fixed-size head needs a fixed K). "
        f"Default {DEFAULT_TOKENS} when neither `tokens` nor `ratio` is set.",
    )
    ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Alternative to `tokens`: K = max(ceil(ratio * N), 1) with N the padded bag length "
        "of the batch (the reference uses 0.0008 with bags fixed at 2,500 patches). The head size then "
        "depends on N, so only use it with fixed-size bags.",
    )
    k: int = Field(5, ge=1, description="Neighbours of the local density (the token itself included).")
    chunk_size: int = Field(
        1024,
        ge=1,
        description="Rows of the distance matrix computed at once: memory is about "
        "chunk_size x N x 4 bytes instead of the N x N of a full distance matrix.",
    )
    exact: bool = Field(
        False,
        description="True: exact DPC-kNN over all tokens (O(N^2 D) time, O(chunk_size x N) memory), the "
        "setting that reproduces results made before the approximate search became the default. "
        "False: bags of more than `exact_below` tokens get their k nearest neighbours (hence the "
        "densities) from an inverted-file search over `cells` cells, `probe` cells per token "
        "(O(N^1.5 D)); the densities and the distance to the nearest denser token stay exact for the "
        "tokens that can become centres. Its agreement with exact is measured in docs/performance.md.",
    )
    exact_below: int = Field(
        8192,
        ge=0,
        description="With `exact: false`, bags of at most this many tokens still use the exact search: "
        "there it costs well under a second and gives the exact result (the paper's bags hold 2,500).",
    )
    cells: int | None = Field(
        None, ge=1, description="Cells of the approximate search (default ceil(sqrt(N)) per bag)."
    )
    probe: int = Field(16, ge=1, description="Nearest cells searched per token by the approximate search.")
    seed: Seed = Field(0, description="Seed of the approximate search's landmarks (deterministic results).")

    @model_validator(mode="after")
    def _one_size(self) -> DpcKnnConfig:
        if self.tokens is not None and self.ratio is not None:
            raise ValueError("set either `tokens` (a fixed K) or `ratio` (K proportional to N), not both")
        if self.tokens is None and self.ratio is None:
            self.tokens = DEFAULT_TOKENS
        return self


class TopkConfig(_Config):
    """The K tokens with the highest learned score are the centres (no density clustering)."""

    tokens: int = Field(DEFAULT_TOKENS, ge=1, description="Number K of merged output tokens.")


class NoAggregationConfig(_Config):
    """Ablation 'token aggregation off': the masked mean of the (normalised) tokens, one output token."""


class ConfidenceCoordinatorConfig(_Config):
    """Confidence-guided gradient coordination of the subspace heads."""

    mode: Literal["plain", "reference"] = Field(
        "plain",
        description="'plain': replace the less confident subspace's conflicting gradient by its "
        "projection onto the normal plane of the other's (g - (g.h/|h|^2) h). 'reference': what the "
        "released code does (subtract the projection twice, rescale to the once-projected norm: a "
        "reflection across that plane), for reproduction.",
    )


class NoCoordinationConfig(_Config):
    """The baseline: gradients are left as backward computed them."""


LogitKind = Literal["softmax", "hazards"]


class LogitKdConfig(_Config):
    """Knowledge distillation on the per-view logits only."""

    temperature: float = Field(2.0, gt=0, description="Softening temperature T (the loss is scaled by T^2).")
    alpha: float = Field(0.01, ge=0, description="Weight of the KD term (the reference: 0.01).")
    logits: LogitKind = Field(
        "softmax",
        description="'softmax': KL between class distributions softmax(t/T) and softmax(s/T) (what the "
        "reference does for every task). 'hazards': discrete-time survival heads whose outputs are "
        "per-bin hazard logits: the Bernoulli KL of sigmoid(t/T) against sigmoid(s/T), summed over bins.",
    )


class SubspaceKdConfig(LogitKdConfig):
    """The paper's subspace distillation: logit KD plus MSE of the student's tokens to the teacher's
    subspaces."""

    beta: float = Field(
        0.01,
        ge=0,
        description="Weight of the MSE between the student's view embedding and the concatenation of "
        "the teacher's subspace features of that view (the reference: 0.01).",
    )

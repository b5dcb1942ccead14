"""Settings shared by stages. The model spec travels inside every artifact's meta.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xdr.errors import MismatchError

Pooling = Literal["cls", "mean"]
DEFAULT_BETA = 0.5  # max-sim weight of the best generated query, chosen in docs/results/maxsim.md
DType = Literal["auto", "float32", "bfloat16", "float16"]


class ModelSpec(BaseModel):
    """How a checkpoint turns text into vectors. Two specs with the same ``space`` share one vector space."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="registry name, hub id or local directory as the user gave it")
    path: str = Field(description="resolved local directory or hub id that transformers loads")
    fingerprint: str = Field(default="", description="identity of the weights (checksum or hub revision)")
    pooling: Pooling = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    title_separator: str = Field(default=" ", description="joins a passage's title and text before encoding")
    query_max_length: int = Field(default=64, gt=0)
    passage_max_length: int = Field(default=512, gt=0)
    dtype: DType = "auto"

    def space(self) -> dict[str, Any]:
        """The fields that decide the vector space; prefixes and lengths may differ per use."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "pooling": self.pooling,
            "normalize": self.normalize,
        }

    def check_same_space(self, other: ModelSpec, what: str) -> None:
        """Refuse to compare vectors from two different models: the scores would be meaningless."""
        a, b = self.space(), other.space()
        diff = [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]
        if diff:
            raise MismatchError(f"{what} was made with another model ({'; '.join(diff)})")

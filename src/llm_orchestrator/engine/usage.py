"""Token usage, cost and budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llm_orchestrator.exceptions import BudgetExceededError


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
        )

    def to_dict(self) -> dict[str, int | float]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 8),
        }


ZERO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Price:
    """USD per one million tokens."""

    input_per_mtok: float
    output_per_mtok: float


#: Default list prices (USD per 1M tokens). Users override or extend these with `prices:` in
#: llm-orchestrator.yaml; a model missing from the table costs 0 and is reported as unpriced.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-5-haiku-latest": Price(0.80, 4.00),
}


class PriceTable:
    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}

    def lookup(self, model: str) -> Price | None:
        price = self._prices.get(model)
        if price is not None:
            return price
        # dated snapshots ("gpt-4o-mini-2024-07-18") fall back to the longest priced prefix
        best = max((m for m in self._prices if model.startswith(m + "-")), key=len, default=None)
        return self._prices[best] if best else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.lookup(model)
        if price is None:
            return 0.0
        return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None


class RunAccounting:
    """Running usage totals of one run, checked against its budget on every call."""

    __slots__ = ("budget", "total")

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.total = ZERO_USAGE

    def check(self, step_id: str) -> None:
        """Refuse to start more paid work once the budget is spent."""
        budget = self.budget
        if budget is None:
            return
        if budget.max_tokens is not None and self.total.total_tokens >= budget.max_tokens:
            raise BudgetExceededError(
                f"budget exceeded before step '{step_id}' could start: "
                f"{self.total.total_tokens} tokens used of max_tokens {budget.max_tokens}",
                step_id=step_id,
            )
        if budget.max_cost_usd is not None and self.total.cost_usd >= budget.max_cost_usd:
            raise BudgetExceededError(
                f"budget exceeded before step '{step_id}' could start: "
                f"${self.total.cost_usd:.6f} spent of max_cost_usd {budget.max_cost_usd}",
                step_id=step_id,
            )

    def record(self, step_id: str, usage: Usage) -> None:
        self.total = self.total + usage
        budget = self.budget
        if budget is None:
            return
        if budget.max_tokens is not None and self.total.total_tokens > budget.max_tokens:
            raise BudgetExceededError(
                f"step '{step_id}' crossed the budget: {self.total.total_tokens} tokens used, "
                f"max_tokens is {budget.max_tokens}",
                step_id=step_id,
            )
        if budget.max_cost_usd is not None and self.total.cost_usd > budget.max_cost_usd:
            raise BudgetExceededError(
                f"step '{step_id}' crossed the budget: ${self.total.cost_usd:.6f} spent, "
                f"max_cost_usd is {budget.max_cost_usd}",
                step_id=step_id,
            )

"""The cost planner (`xdr plan`): what a pipeline will cost on given hardware, from measured rates."""

from __future__ import annotations

from xdr.plan.estimate import Plan, StageCost, Workload, plan
from xdr.plan.rates import Rate, bundled_rates, rates_from_results

__all__ = ["Plan", "Rate", "StageCost", "Workload", "bundled_rates", "plan", "rates_from_results"]

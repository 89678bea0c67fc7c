"""The interaction methods' numbers that the service repeats without importing torch
(service/kinds/tabular_params.py, tabular_cost.py) equal the core's own (worker/core/attribution):
a budget the API accepts is one the worker runs, and its estimate counts what the worker does."""

from __future__ import annotations

import pytest

from service.kinds import tabular_cost, tabular_params
from worker.core.attribution import interactions, interactions_sampled
from worker.core.attribution.integrated_hessians import DEFAULT_STEPS, MAX_STEPS


@pytest.mark.parametrize("index", tabular_params.INTERACTION_INDICES)
def test_the_budget_rules_of_the_service_are_the_core_s(index):
    for variables in range(2, 41):
        assert tabular_cost.default_interaction_budget(variables) == interactions_sampled.default_budget(variables)
        assert tabular_cost.minimum_interaction_budget(index, variables) == interactions_sampled.minimum_budget(
            index, variables
        )
        # the default budget is always enough to run
        assert tabular_cost.default_interaction_budget(variables) >= interactions_sampled.minimum_budget(
            index, variables
        )


def test_the_limits_and_defaults_of_the_service_are_the_core_s():
    assert tabular_params.INTERACTION_INDICES == interactions.INDICES
    assert tabular_params.DEFAULT_INTERACTION_INDEX == interactions.DEFAULT_INDEX
    assert tabular_params.MAX_EXACT_SHAPLEY_VARIABLES == interactions.MAX_VARIABLES
    assert tabular_params.MAX_HESSIAN_STEPS == MAX_STEPS
    assert tabular_params.DEFAULT_HESSIAN_STEPS == DEFAULT_STEPS


def test_exact_up_to_the_limit_and_sampled_above_or_under_a_smaller_budget():
    assert not tabular_cost.interactions_sampled(12, None) and tabular_cost.interactions_sampled(13, None)
    assert tabular_cost.interactions_sampled(9, 511) and not tabular_cost.interactions_sampled(9, 512)
    assert tabular_cost.interaction_coalitions(9, None) == 512 and tabular_cost.interaction_coalitions(9, 200) == 200
    assert tabular_cost.interaction_coalitions(20, None) == interactions_sampled.default_budget(20)

"""`tabular_attribution`: which variables drive an output or a hidden neuron of a tabular model.

The request names rows (from a CSV dataset, or inline), a target (a model output, or a hidden
neuron), a method and a baseline. Everything is reported in the user's variables: a
categorical that the model sees one-hot is one variable, never a set of columns.

This module is imported by the API: no torch here. It declares the kind; its parts are
`tabular_params` (limits and the params model), `tabular_checks` (rows, target and datasets
against the catalog records, at submit and in the worker) and `tabular_cost` (the model
evaluations a job makes, and its estimate).
"""

from __future__ import annotations

from service.jobspec import JobKind
from service.kinds.tabular_checks import check_tabular_attribution, tabular_datasets
from service.kinds.tabular_cost import tabular_attribution_cost
from service.kinds.tabular_params import MAX_EXACT_SHAPLEY_VARIABLES, TabularAttributionParams

JOB_KINDS = [
    JobKind(
        name="tabular_attribution",
        params_model=TabularAttributionParams,
        handler="worker.kinds.tabular_attribution:run",
        description="Which variables of a tabular model push an output or a hidden neuron up or down, "
        "per row and over a dataset: integrated gradients, DeepLift, gradient SHAP, saliency, "
        "input x gradient, feature ablation, Shapley value sampling, KernelSHAP, and exact Shapley "
        f"(up to {MAX_EXACT_SHAPLEY_VARIABLES} variables); which pairs of variables act together: "
        "pairwise Shapley interactions (k-SII, STII, FSII) and integrated Hessians. Categorical "
        "variables are reported as one variable. Also the rows that activate the target most and the input that maximizes it.",
        check=check_tabular_attribution,
        cost=tabular_attribution_cost,
        datasets=tabular_datasets,
    )
]

"""What this deployment runs: built-in job kinds plus those of `GLASSBOX_PLUGINS` modules.

A plugin module defines `JOB_KINDS` (a list of `service.jobspec.JobKind`) and may define
`MODELS` (model records, dicts with at least an `id`, that workers register as built-in models
when they start). The API and the worker both load plugins from their settings, so they agree
on the kinds and validate `params` with the same models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from service.jobspec import JobKind
from service.settings import Settings

BUILTIN_PLUGIN_MODULES: tuple[str, ...] = (
    "service.kinds.model_inspection",
    "service.kinds.deconvnet",
    "service.kinds.activation_maximization",
    "service.kinds.tabular_attribution",
    "service.kinds.activation_index",
    "service.kinds.dataset_indexing",
    "service.kinds.atlas",
)


class PluginError(RuntimeError):
    pass


@dataclass(frozen=True)
class Plugins:
    kinds: dict[str, JobKind] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)


def load_plugins(settings: Settings) -> Plugins:
    kinds: dict[str, JobKind] = {}
    models: list[dict[str, Any]] = []
    # A module named twice (a built-in also listed in GLASSBOX_PLUGINS) is loaded once.
    for module_name in dict.fromkeys((*BUILTIN_PLUGIN_MODULES, *settings.plugins)):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"cannot import plugin module {module_name!r}: {exc}") from exc
        declared = getattr(module, "JOB_KINDS", None)
        if not isinstance(declared, (list, tuple)) or not all(isinstance(k, JobKind) for k in declared):
            raise PluginError(f"{module_name} must define JOB_KINDS, a list of service.jobspec.JobKind")
        for kind in declared:
            if kind.name in kinds:
                raise PluginError(f"job kind {kind.name!r} is defined twice (again in {module_name})")
            kinds[kind.name] = kind
        for record in getattr(module, "MODELS", ()):
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise PluginError(f"{module_name}.MODELS must hold dicts with a string `id`")
            models.append(record)
    return Plugins(kinds=kinds, models=models)

"""Which job kinds this deployment runs: the built-in ones plus those of `GLASSBOX_PLUGINS`.

The API and the worker both call `load_job_kinds` with their settings, so they agree on the
kinds and validate `params` with the same models.
"""

from __future__ import annotations

import importlib

from service.jobspec import JobKind
from service.settings import Settings

BUILTIN_KIND_MODULES: tuple[str, ...] = ()


class PluginError(RuntimeError):
    pass


def load_job_kinds(settings: Settings) -> dict[str, JobKind]:
    kinds: dict[str, JobKind] = {}
    for module_name in (*BUILTIN_KIND_MODULES, *settings.plugins):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"cannot import job-kind module {module_name!r}: {exc}") from exc
        declared = getattr(module, "JOB_KINDS", None)
        if not isinstance(declared, (list, tuple)) or not all(isinstance(k, JobKind) for k in declared):
            raise PluginError(f"{module_name} must define JOB_KINDS, a list of service.jobspec.JobKind")
        for kind in declared:
            if kind.name in kinds:
                raise PluginError(f"job kind {kind.name!r} is defined twice (again in {module_name})")
            kinds[kind.name] = kind
    return kinds

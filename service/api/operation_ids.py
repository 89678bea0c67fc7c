"""OpenAPI operation ids: the camelCase of the route function's name (`create_job` -> `createJob`).

FastAPI's default id is the function name plus path and method (`create_job_v1_jobs_post`),
which client generators turn into function names nobody wants to type. Every router passes
this as its `generate_unique_id_function`, so a route's id is chosen by naming its function.
"""

from __future__ import annotations

from fastapi.routing import APIRoute


def camel_case_operation_id(route: APIRoute) -> str:
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)

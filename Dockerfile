# One image for both roles: `glassbox api` (default CMD) and `glassbox worker`.
# Production points GLASSBOX_REDIS_URL at a real Redis; no redis-server is installed here.
# The locked torch is the CUDA-capable PyPI build: run workers with the NVIDIA container
# runtime (compose: the worker's `deploy.resources.reservations.devices`) to use a GPU.
# No HEALTHCHECK here: the same image runs workers, which serve no HTTP; docker-compose.yml
# sets a healthcheck per service instead.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN pip install "uv==0.13.9"

WORKDIR /app

# Dependencies first, from the lock only, so that code changes do not reinstall torch.
COPY pyproject.toml uv.lock .python-version README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself.
COPY service/ ./service/
COPY worker/ ./worker/
COPY openapi/ ./openapi/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# Non-root runtime user. The code and the venv stay root-owned (read-only to the service);
# /app itself is writable so that `glassbox up` can create its data dir (.glassbox) there.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/glassbox \
        --shell /usr/sbin/nologin glassbox \
    && chown glassbox:glassbox /app
USER glassbox

ENV PATH="/app/.venv/bin:${PATH}"

EXPOSE 8000
ENTRYPOINT ["glassbox"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# Image for users without Nix (the Nix flake's `.#image` is the primary build:
# no shell, reproducible). Same lock, same entry point, same uid.
#
# The base is pinned by digest. The digest below is python:3.11-slim as found
# in two unrelated public Dockerfiles (one via docker.io, one via the
# public.ecr.aws mirror); it could not be checked against Docker Hub from the
# build machine. Refresh with:
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# The uv release the lock was written with.
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY python/scalekeeper python/scalekeeper
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The uid the chart's securityContext expects (runAsNonRoot needs a numeric user).
USER 65532:65532
EXPOSE 8443 8444 8080
ENTRYPOINT ["/app/.venv/bin/scalekeeper"]

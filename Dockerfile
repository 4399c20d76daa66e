# Image for users without Nix (the Nix flake's `.#image` is the primary build:
# no shell). Same lock, same entry point, same uid. `make image` builds it
# when no usable Nix is found (python/scalekeeper_dev/image.py).
#
# Reproducible: the same commit gives the same layers when built as `make
# image` does (SOURCE_DATE_EPOCH, BuildKit's rewrite-timestamp). No `# syntax=`
# line: the builder's own Dockerfile frontend is used, not one pulled by tag.
# Every download is pinned: the base by digest, uv by hash
# (docker/uv-requirements.txt), the dependencies and hatchling by uv.lock.
#
# The base digest is python:3.11-slim as found in two unrelated public
# Dockerfiles (one via docker.io, one via the public.ecr.aws mirror); it could
# not be checked against Docker Hub from the build machine. Refresh with:
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS build
# 1970-01-01T00:00:01Z unless the build passes one (make image does, as Nix's image.nix).
ARG SOURCE_DATE_EPOCH=1
# SOURCE_DATE_EPOCH in the environment also makes the compiled .pyc files
# hash-checked instead of stamped with the source files' times.
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
COPY docker/uv-requirements.txt /tmp/uv-requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r /tmp/uv-requirements.txt
WORKDIR /src
# Dependencies first: this layer is reused until uv.lock changes. The `build`
# group is hatchling, the build backend, locked with its hashes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --group build --no-install-project
COPY README.md ./
COPY python/scalekeeper python/scalekeeper
# The project is built with the locked hatchling (no isolated build
# environment that would fetch an unpinned one), offline; the second, exact
# sync removes the build group from the runtime virtualenv.
RUN uv sync --frozen --offline --no-dev --no-editable --no-build-isolation-package scalekeeper --group build \
 && uv sync --frozen --offline --no-dev --no-editable --no-build-isolation-package scalekeeper

FROM ${PYTHON_IMAGE} AS base
# The uid the chart's securityContext expects (runAsNonRoot needs a numeric
# user), with passwd/group entries so tools that look the user up work.
RUN echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 8443 8444 8080

# Tilt's image when Nix is not usable (the counterpart of Nix's image-dev):
# live_update syncs python/ into /app/python, and nix/dev-reloader.py
# restarts the server when those files change.
FROM base AS dev
USER root
# Writable by the server's user: live_update also creates new files and directories there.
RUN mkdir /app/python && chown 65532:65532 /app/python
USER 65532:65532
COPY --chown=65532:65532 python/scalekeeper /app/python/scalekeeper
COPY nix/dev-reloader.py /app/dev-reloader.py
ENV PYTHONPATH=/app/python
ENTRYPOINT ["/app/.venv/bin/python", "/app/dev-reloader.py", "--watch", "/app/python", "--", "/app/.venv/bin/python", "-m", "scalekeeper"]

# Last, so a plain `docker build .` gives the production image.
FROM base AS runtime
ENTRYPOINT ["/app/.venv/bin/scalekeeper"]

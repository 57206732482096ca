# certsmith operator image. The base is a build argument so that machines without a
# registry can build on a local Python image (hack/kind-node/base-images makes one).
ARG PYTHON_BASE_IMAGE=python:3.11-slim

FROM ${PYTHON_BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml ./
COPY operator ./operator
RUN python3 -m venv /opt/certsmith \
 && /opt/certsmith/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${PYTHON_BASE_IMAGE}
COPY --from=build /opt/certsmith /opt/certsmith
ENV PATH=/opt/certsmith/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user, so runAsNonRoot can verify it without a passwd entry.
USER 65532:65532
ENTRYPOINT ["certsmith"]
CMD ["--liveness=http://0.0.0.0:8080/healthz"]

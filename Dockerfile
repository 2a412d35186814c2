# The image for docker-compose.yml: the `cutover` command and both demo backends.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY legacy_backend ./legacy_backend
COPY new_backend ./new_backend
RUN pip install .

COPY config ./config

# 8080: the proxy; 9180: the admin API and /metrics.
EXPOSE 8080 9180
CMD ["cutover", "run", "--config", "config/cutover.yaml"]

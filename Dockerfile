# One image for every fss role; the role is the command (ENTRYPOINT is `fss`):
#   docker run --rm fss:0.1.0 db upgrade
#   docker run --rm fss:0.1.0 scheduler
#   docker run --rm fss:0.1.0 worker -A fss.examples.jobs
#   docker run --rm -p 127.0.0.1:50051:50051 fss:0.1.0 bridge --listen 0.0.0.0:50051
#   docker run --rm -p 127.0.0.1:8000:8000 -e FSS_WEB_USERS=admin:secret fss:0.1.0 web --host 0.0.0.0
# Build from the repository root: docker build -t fss:0.1.0 .
# Configuration comes from the environment (FSS_DATABASE_URL, FSS_BROKER_URL, FSS_*).
#
# No HEALTHCHECK here: no one command tells, for every role, whether *this* process works.
# The scheduler's health is its heartbeat row in the database, a worker holds no database
# credentials and answers a broker ping, the bridge answers gRPC health on its port, the web
# UI answers /healthz and /readyz over HTTP, and `db upgrade` exits. compose.yaml and deploy/k8s/ give each role its own check.

# Build stage: install fss and its dependencies into a virtualenv that the final image copies,
# so neither the source tree nor the build tools end up in it.
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY . .
# [mysql]: PyMySQL (pure Python) so the same image runs on MySQL/MariaDB as well.
RUN python -m venv /opt/fss \
    && /opt/fss/bin/pip install --no-cache-dir ".[mysql]" \
    && /opt/fss/bin/fss --version

FROM python:3.11-slim-bookworm

# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 fss \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fss --create-home \
       --shell /usr/sbin/nologin fss

COPY --from=build /opt/fss /opt/fss

# PYTHONUNBUFFERED: log lines reach `docker logs` / `kubectl logs` at once.
# PYTHONDONTWRITEBYTECODE: pip compiled the bytecode at install; nothing is written at run
# time, so the root filesystem can be mounted read-only.
ENV PATH="/opt/fss/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The working directory is the fss user's home: `fss dev` keeps its SQLite file here.
WORKDIR /var/lib/fss
USER 10001:10001

# `fss bridge --listen 0.0.0.0:50051` (gRPC, fss.v1 and grpc.health.v1);
# `fss web --host 0.0.0.0` (HTTP: UI, /api/v1, /metrics, /healthz, /readyz).
EXPOSE 50051 8000

ENTRYPOINT ["fss"]
CMD ["--help"]

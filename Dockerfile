# chat2crm container image: the same processes as the Procfile (web, worker).
#   docker build -t chat2crm .
#   docker run --env-file .env -p 8000:8000 chat2crm                 # web
#   docker run --env-file .env chat2crm chat2crm worker              # a worker
# Configuration: mount your folder and point CHAT2CRM_CONFIG at it, e.g.
#   -v $PWD/clinic:/config -e CHAT2CRM_CONFIG=/config/chat2crm.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8000 \
    LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md chat2crm.yaml campaigns.yaml ./
COPY connector ./connector
COPY adapters ./adapters
COPY emulators ./emulators
COPY mappings ./mappings
COPY bot_flows ./bot_flows
COPY schemas ./schemas
RUN pip install . && useradd --system --uid 10001 chat2crm
USER chat2crm
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
CMD ["chat2crm", "serve"]

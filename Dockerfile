# chat2crm container image: the same processes as the Procfile (web, worker), installed the way
# any Python service is: the package and its pinned dependencies (requirements.lock), nothing else.
#   docker build -t chat2crm .
#   docker run --env-file .env -v $PWD/clinic:/srv/chat2crm -p 8000:8000 chat2crm              # web
#   docker run --env-file .env -v $PWD/clinic:/srv/chat2crm chat2crm chat2crm worker            # a worker
# Configuration: the folder `chat2crm init clinic` wrote, mounted at /srv/chat2crm (the working
# folder, so ./chat2crm.yaml is found), or CHAT2CRM_CONFIG pointing at it.
# The web command (`chat2crm serve`) runs gunicorn with connector/gunicorn_conf.py: threaded workers,
# bounded request lines and headers, a redacting access log; the app reads each body whole within
# MAX_BODY_BYTES and BODY_TIMEOUT_SECONDS. Behind a platform's router or a load balancer, set
# FORWARDED_ALLOW_IPS to its addresses or network (docs/deploying.md, "Slow clients").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8000 \
    LOG_FORMAT=json \
    BODY_TIMEOUT_SECONDS=10

WORKDIR /build
COPY pyproject.toml README.md requirements.lock ./
COPY core ./core
COPY connector ./connector
COPY adapters ./adapters
COPY emulators ./emulators
COPY demo ./demo
RUN pip install -c requirements.lock . && rm -rf /build && useradd --system --uid 10001 chat2crm
WORKDIR /srv/chat2crm
USER chat2crm
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
CMD ["chat2crm", "serve"]

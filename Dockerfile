# The collector image: `firstparty serve` as a non-root user, data (spool, admin socket, or the
# embedded engine when no ClickHouse server is configured) in the /var/lib/firstparty volume.
#   docker build -t firstparty .
#   docker run -p 8000:8000 -v firstparty-data:/var/lib/firstparty firstparty
# Production: docker-compose.yml (one ClickHouse server) or docker-compose.cluster.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the distribution needs, so a change to tests or docs does not rebuild the layer.
COPY pyproject.toml README.md NOTICE ./
COPY firstparty ./firstparty
COPY collector ./collector
COPY ingest ./ingest
COPY store ./store
COPY dashboards ./dashboards
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/firstparty firstparty \
    && mkdir -p /var/lib/firstparty /etc/firstparty \
    && firstparty init --path /etc/firstparty/firstparty.toml \
    && chown -R firstparty:firstparty /var/lib/firstparty

# Defaults for a bare `docker run`; docker-compose.yml sets FIRSTPARTY_STORE to the server and
# mounts the operator's config over /etc/firstparty/firstparty.toml.
ENV FIRSTPARTY_CONFIG=/etc/firstparty/firstparty.toml \
    FIRSTPARTY_SERVER_DATA_DIR=/var/lib/firstparty \
    FIRSTPARTY_STORE=chdb:///var/lib/firstparty/clickhouse

VOLUME ["/var/lib/firstparty"]
WORKDIR /var/lib/firstparty
USER firstparty:firstparty
EXPOSE 8000

# python:3.11-slim has no curl or wget; the standard library is enough for a health probe.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# SIGTERM (docker stop) makes the server flush the spool into the store before it exits.
STOPSIGNAL SIGTERM
CMD ["firstparty", "serve", "--host", "0.0.0.0", "--port", "8000"]

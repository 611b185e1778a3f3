# labservice as a container: the wheel built from this checkout, installed into a venv, served by gunicorn
# (`labservice serve`, the serving model of the README: a buffering front with gunicorn workers behind it, labservice's own settings) as a
# non-root user. The embedded SQLite database, batch results and the session key live in the instance folder
# /var/lib/labservice, a volume. With PostgreSQL and Redis, set DATABASE_URL and LABSERVICE_REDIS_URL
# (docs/operations-and-security.md, "Run it in a container").
#
#   docker build -t labservice .
#   docker run -d -p 8000:8000 -v labservice-data:/var/lib/labservice --name labservice labservice
#   docker exec labservice labservice create-key --name my-first-key --scopes interpret,read

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# 1. The wheel (the sdist first, then the wheel from it: what a user installs, not the checkout).
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
RUN python -m pip install --no-cache-dir "build==1.*"
COPY . .
RUN python -m build --outdir /dist .

# 2. The service: the wheel and its dependencies only.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/labservice/bin:$PATH \
    LABSERVICE_INSTANCE_PATH=/var/lib/labservice
COPY --from=wheel /dist/*.whl /tmp/wheels/
RUN python -m venv /opt/labservice \
    && /opt/labservice/bin/pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 labservice \
    && useradd --system --uid 10001 --gid labservice --home-dir /var/lib/labservice --shell /usr/sbin/nologin labservice \
    && install -d -o labservice -g labservice -m 0750 /var/lib/labservice
WORKDIR /var/lib/labservice
VOLUME ["/var/lib/labservice"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# Workers: two per core is gunicorn's advice; set them with `docker run ... labservice serve -b 0.0.0.0:8000 -w N`.
CMD ["labservice", "serve", "--bind", "0.0.0.0:8000", "--workers", "2"]

# Sohbet: the package is installed (not editable) with all its dependencies; the site files
# (templates/, partials/, static/) live in WORKDIR, where the app looks for them.
# tests/test_deploy.py builds the same wheel, installs it the same way and starts it with this
# CMD, since no Docker engine runs in CI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORT=8000
WORKDIR /app

RUN useradd --create-home --uid 10001 sohbet
COPY pyproject.toml README.md ./
COPY app ./app
COPY media_relay ./media_relay
# Install, then drop the sources: the image runs the installed package (so a package missing
# from pyproject.toml's list fails the health check, as it fails tests/test_deploy.py).
RUN pip install . && rm -rf app media_relay build *.egg-info \
    && mkdir -p /app/data && chown sohbet:sohbet /app/data
COPY templates ./templates
COPY partials ./partials
COPY static ./static

USER sohbet
VOLUME ["/app/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT','8000'), timeout=4).status == 200 else 1)"
# One process per container (scale with more containers, REDIS_URL and PostgreSQL). Workers 0
# runs the app in Hypercorn's own process: SIGTERM reaches it directly and a failed start exits
# non-zero (Hypercorn's supervisor reports 0).
CMD ["sh", "-c", "exec hypercorn app.asgi:app --worker-class uvloop --bind 0.0.0.0:${PORT} --workers 0 --graceful-timeout 5"]

# Sohbet: the same install steps as the README's quick start (pip install of this project).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN useradd --create-home --uid 10001 sohbet
COPY pyproject.toml README.md ./
COPY app ./app
COPY media_relay ./media_relay
COPY templates ./templates
COPY partials ./partials
COPY static ./static
RUN pip install -e . && mkdir -p /app/data && chown sohbet:sohbet /app/data

USER sohbet
VOLUME ["/app/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
CMD ["hypercorn", "app.asgi:app", "--bind", "0.0.0.0:8000", "--graceful-timeout", "5"]

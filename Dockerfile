# llm-backend: the Label Studio ML backend, served by gunicorn on port 9090.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PORT=9090 \
    PROMPTS_DIR=/app/prompts \
    CACHE_DIR=/data/cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY llm_backend ./llm_backend
RUN pip install . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data/cache \
    && chown -R app:app /data
COPY prompts ./prompts

USER app
VOLUME ["/data"]
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '9090'), timeout=2)" || exit 1
CMD ["llm-backend", "serve"]

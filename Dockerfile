# One image for web, worker and beat (see compose.yaml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system cpv && useradd --system --gid cpv --home-dir /app --shell /usr/sbin/nologin cpv

WORKDIR /app
COPY requirements.txt ./
# The lock names every dependency with its hashes: nothing unpinned or altered is installed.
RUN pip install --require-hashes --no-deps -r requirements.txt

COPY --chown=cpv:cpv . .
# collectstatic needs settings, not secrets: a throwaway key for this one build step.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-used-at-run-time-xxxxxxxxxxxxxxxxxxxx \
    CPV_VAR_DIR=/app/var python manage.py collectstatic --no-input -v 0 \
    && chown -R cpv:cpv /app/var

USER cpv
EXPOSE 8000
CMD ["gunicorn", "cpv.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]

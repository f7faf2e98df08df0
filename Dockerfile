# One image for web, worker, beat and migrate (see compose.yaml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system cpv && useradd --system --gid cpv --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin cpv

WORKDIR /app
COPY requirements.txt ./
# The lock names every dependency with its hashes: nothing unpinned or altered is installed.
RUN pip install --require-hashes --no-deps -r requirements.txt

# Owned by root and not writable by the runtime user: a process taken over cannot change the code it runs, the
# static files it serves or gunicorn's settings.
COPY . .
# collectstatic needs settings, not secrets: a throwaway key for this one step, and the role of a process that
# holds no vault key (migrate), so that the embedded defaults make no key pair here. Whatever else the step left
# under var/ goes; the build fails if a key is left behind.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-used-at-run-time-xxxxxxxxxxxxxxxxxxxx \
    CPV_PROCESS_ROLE=migrate CPV_VAR_DIR=/app/var python manage.py collectstatic --no-input -v 0 \
    && find /app/var -mindepth 1 -maxdepth 1 ! -name static -exec rm -rf {} + \
    && ! find / -xdev \( -name 'vault*.key' -o -name 'vault*.pub' -o -name 'secret.key' \) -print | grep .

USER cpv
EXPOSE 8000
# gunicorn reads /app/gunicorn.conf.py: it trusts X-Forwarded-* only with CPV_TRUST_PROXY=true.
CMD ["gunicorn", "cpv.wsgi:application"]

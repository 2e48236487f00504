# The production image: one image for web (gunicorn), worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 STATIC_MANIFEST=1 MLM_VAR_DIR=/app/var
WORKDIR /app

# xmlsec1 checks and makes the signatures of SAML single sign-on (pysaml2).
RUN apt-get update && apt-get install -y --no-install-recommends xmlsec1 \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY mlm ./mlm
COPY consent ./consent
COPY recipients ./recipients
COPY campaigns ./campaigns
RUN pip install --no-cache-dir .

COPY . .
# collectstatic needs settings that start; these build-time keys are thrown away with the layer.
RUN SECRET_KEY=build-only MLM_ADDRESS_HASH_KEY=build-only \
    MLM_DKIM_ENCRYPTION_KEY="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    DEBUG=0 python manage.py collectstatic --noinput \
    && useradd --system --home /app mlm && mkdir -p /app/var/media && chown -R mlm /app/var
USER mlm

EXPOSE 8000
CMD ["gunicorn", "mlm.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]

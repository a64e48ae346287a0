FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/venv
RUN pip install --no-cache-dir uv==0.13.8 && useradd --create-home --uid 10001 veil
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY sdk ./sdk
RUN uv sync --frozen --no-dev
COPY . .
RUN DEBUG=0 SECRET_KEY=collectstatic-only /venv/bin/python manage.py collectstatic --noinput \
  && mkdir -p var/audit-exports var/audit-archive && chown -R veil:veil var
# var/ is the veil user's (and so is a new volume mounted on it): the worker writes exports there.
USER veil
ENV PATH=/venv/bin:$PATH
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]

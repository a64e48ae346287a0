"""The import contracts `make lint` checks (pyproject.toml, [tool.importlinter]) fail on the imports
they forbid: each test copies the source tree, adds one forbidden import and runs import-linter on
the copy, so the contracts are shown to bite without a throwaway commit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ["config", "jitaccess", "masking", "identity", "audit", "shared"]


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the Python sources and the contracts, importable ahead of the real tree."""
    skip = shutil.ignore_patterns("__pycache__", "*.html", "*.js", "*.css")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=skip)
    shutil.copytree(ROOT / "sdk" / "veil_sdk", tmp_path / "veil_sdk", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(tree: Path, module: str, statement: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{statement}  # the forbidden import under test\n")


def test_the_copied_tree_keeps_every_contract(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_audit_importing_masking_breaks_the_layers(tree: Path) -> None:
    add_import(tree, "audit.services", "import masking.models")
    result = lint(tree)
    assert result.returncode == 1
    assert "audit.services -> masking.models" in result.stdout


def test_config_plumbing_imported_by_an_app_breaks_the_layers(tree: Path) -> None:
    add_import(tree, "identity.apis", "import config.urls")
    result = lint(tree)
    assert result.returncode == 1
    assert "identity.apis -> config.urls" in result.stdout


def test_django_in_the_sdk_breaks_its_contract(tree: Path) -> None:
    add_import(tree, "veil_sdk.client", "import django.db")
    result = lint(tree)
    assert result.returncode == 1
    assert "veil_sdk.client -> django" in result.stdout


def test_a_contrib_recipe_importing_an_app_breaks_its_contract(tree: Path) -> None:
    add_import(tree, "veil_sdk.contrib.sqlalchemy", "import masking.models")
    result = lint(tree)
    assert result.returncode == 1
    assert "veil_sdk.contrib.sqlalchemy -> masking.models" in result.stdout


def test_the_orm_in_the_engine_breaks_its_purity(tree: Path) -> None:
    add_import(tree, "masking.decisions.engine", "import masking.models")
    result = lint(tree)
    assert result.returncode == 1
    assert "masking.decisions.engine -> masking.models" in result.stdout


def test_jitaccess_importing_a_masking_page_breaks_its_public_surface(tree: Path) -> None:
    add_import(tree, "jitaccess.views", "import masking.policy.views")
    result = lint(tree)
    assert result.returncode == 1
    assert "jitaccess.views -> masking.policy.views" in result.stdout


def test_masking_importing_identitys_sign_in_breaks_its_public_surface(tree: Path) -> None:
    add_import(tree, "masking.selectors", "import identity.oidc")
    result = lint(tree)
    assert result.returncode == 1
    assert "masking.selectors -> identity.oidc" in result.stdout


def test_identity_importing_audits_pages_breaks_its_public_surface(tree: Path) -> None:
    add_import(tree, "identity.services", "import audit.views")
    result = lint(tree)
    assert result.returncode == 1
    assert "identity.services -> audit.views" in result.stdout

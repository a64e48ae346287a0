"""The example alert rules are valid Prometheus rules, fire when they should (promtool's unit tests),
and are the ones docs/operations.md shows. promtool comes from Debian's prometheus package
(`make test-deps`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "veil-alerts.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    return subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60)


def test_the_alert_rules_are_valid():
    checked = _promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_it_should_and_not_before():
    tested = _promtool("test", "rules", "veil-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_operations_guide_shows_these_rules():
    guide = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```yaml\n(groups:.*?)```", guide, flags=re.S)
    assert blocks, "no alert rules in docs/operations.md"
    rules = RULES.read_text()
    assert blocks[0] == rules[rules.index("groups:") :]

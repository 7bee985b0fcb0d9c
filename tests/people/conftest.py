"""People fixtures: a real OpenLDAP (Debian's slapd) on loopback, users made in the store."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_api.chat.store import open_store
from llm_api.people.passwords import Passwords
from llm_api.people.store import PeopleStore, User
from llm_api.settings import Settings
from tests.conftest import free_port, gateway_settings, serve_gateway
from tests.fakes import FakeEngine

SLAPD = Path("/usr/sbin/slapd")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "directory-root-pw"
# Cheap Argon2id for tests; the benchmark measures the production parameters.
FAST_ARGON = {"argon2_time_cost": 1, "argon2_memory_kib": 8192}

SEED = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: uid=dana,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: dana
cn:: {base64.b64encode("דנה לוי".encode()).decode()}
sn: Levi
mail: dana@example.org
userPassword: dana-pass-123

dn: uid=yossi,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: yossi
cn: Yossi Cohen
sn: Cohen
mail: yossi@example.org
userPassword: yossi-pass-456

dn: cn=sales,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: sales
member: uid=dana,ou=people,{SUFFIX}
member: uid=yossi,ou=people,{SUFFIX}

dn: cn=llm-admins,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: llm-admins
member: uid=yossi,ou=people,{SUFFIX}
"""


def ensure_slapd() -> None:
    """Install Debian's slapd and ldap-utils if absent, as start-api.sh does."""
    if SLAPD.exists() and shutil.which("ldapadd"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "slapd", "ldap-utils"], check=True, env=env
    )


@dataclass(frozen=True)
class Directory:
    url: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "ldap_url": self.url,
            "ldap_bind_dn": ROOT_DN,
            "ldap_bind_password": ROOT_PW,
            "ldap_user_base": f"ou=people,{SUFFIX}",
            "ldap_group_base": f"ou=groups,{SUFFIX}",
            "ldap_admin_groups": ["llm-admins"],
            **overrides,
        }


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    ensure_slapd()
    root = tmp_path_factory.mktemp("slapd")
    (root / "db").mkdir()
    schema = Path("/etc/ldap/schema")
    conf = root / "slapd.conf"
    conf.write_text(
        "".join(f"include {schema / n}.schema\n" for n in ("core", "cosine", "inetorgperson"))
        + f"pidfile {root / 'slapd.pid'}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        + f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{ROOT_DN}"\nrootpw {ROOT_PW}\n'
        + f"directory {root / 'db'}\n"
    )
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = (root / "slapd.log").open("wb")
    process = subprocess.Popen(
        [str(SLAPD), "-f", str(conf), "-h", f"{url}/", "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        (root / "seed.ldif").write_text(SEED)
        for _ in range(100):
            added = subprocess.run(
                ["ldapadd", "-x", "-H", url, "-D", ROOT_DN, "-w", ROOT_PW,
                 "-f", str(root / "seed.ldif")],
                capture_output=True, check=False,
            )  # fmt: skip
            if added.returncode == 0:
                break
            assert process.poll() is None, (root / "slapd.log").read_text()
            time.sleep(0.1)
        else:
            raise AssertionError(f"could not seed slapd: {added.stderr!r}")
        yield Directory(url)
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def people_settings(engine_url: str, **overrides: Any) -> Settings:
    return gateway_settings(engine_url, auth="required", **{**FAST_ARGON, **overrides})


async def add_user(
    settings: Settings, username: str, password: str | None = None, *, role: str = "member",
    source: str = "local", status: str = "active",
) -> User:  # fmt: skip
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        people = PeopleStore(store.engine)
        hashed = await Passwords.from_settings(settings).hash(password) if password else None
        user = await people.create_user(username, role=role, source=source, password_hash=hashed)
        if status != "active":
            user = await people.update_user(user.id, status=status)
        return user
    finally:
        await store.close()


async def sign_in(http: httpx.AsyncClient, username: str, password: str) -> str:
    """Sign in on ``http`` (its cookie jar keeps the session); returns the CSRF token."""
    response = await http.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


@pytest.fixture
def settings(fake_engine: FakeEngine) -> Settings:
    return people_settings(fake_engine.url)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client

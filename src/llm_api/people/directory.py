"""LDAP / Active Directory sign-in: search for the person, then bind as them.

1. Bind with the service account (``LLM_API_LDAP_BIND_DN``) or anonymously.
2. Search ``LDAP_USER_BASE`` with ``LDAP_USER_FILTER``; the username is escaped with
   ldap3's ``escape_filter_chars`` first, so ``*)(uid=*`` is a literal name matching nobody.
   Exactly one entry must match.
3. Bind as that entry's DN with the password given (an empty password is refused before:
   LDAP treats it as an anonymous bind, which "succeeds").
4. Groups from the user's ``memberOf`` attribute, or by searching ``LDAP_GROUP_BASE`` for
   groups listing the DN as ``member``/``uniqueMember``. A group's name is its ``cn``.

ldap3 is synchronous: each sign-in runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from dataclasses import dataclass

from ldap3 import NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from llm_api.errors import StoreUnavailable
from llm_api.settings import Settings

log = logging.getLogger(__name__)


class DirectoryUnavailable(StoreUnavailable):
    """The directory could not be reached or refused the service account."""

    type = "directory_unavailable"


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    username: str
    dn: str
    display_name: str
    email: str | None
    groups: tuple[str, ...]
    admin: bool


def _first(entry: dict[str, list[object]], attribute: str) -> str | None:
    values = entry.get(attribute) or []
    return str(values[0]) if values else None


def group_name(dn: str) -> str:
    """``cn=Sales,ou=groups,dc=example`` → ``Sales`` (the DN itself if it has no cn)."""
    try:
        for kind, value, _ in parse_dn(dn):
            if kind.lower() == "cn":
                return str(value)
    except LDAPException:
        pass
    return dn


def _close(conn: Connection) -> None:
    """Unbind, and close the socket even when the unbind itself fails."""
    try:
        conn.unbind()
    except LDAPException:
        pass
    finally:
        if conn.socket is not None:
            conn.socket.close()


class Directory:
    def __init__(self, settings: Settings) -> None:
        if not settings.ldap_url:
            raise ValueError("LLM_API_LDAP_URL is not set")
        self.settings = settings
        # ldap3 packs the timeouts into socket options as whole seconds.
        self.timeout = max(1, math.ceil(settings.ldap_timeout))
        tls = None
        if settings.ldap_url.startswith("ldaps://") or settings.ldap_start_tls:
            tls = Tls(
                validate=ssl.CERT_REQUIRED if settings.ldap_tls_verify else ssl.CERT_NONE,
                ca_certs_file=str(settings.ldap_ca_file) if settings.ldap_ca_file else None,
            )
        # No schema read: each sign-in is two short connections, and attribute names are
        # not checked against a schema (memberOf is absent from plain OpenLDAP's).
        self.server = Server(
            settings.ldap_url, tls=tls, connect_timeout=self.timeout, get_info=NONE
        )
        self.admin_groups = {g.casefold() for g in settings.ldap_admin_groups}

    def _connect(self, user: str | None, password: str | None) -> Connection:
        conn = Connection(
            self.server,
            user=user,
            password=password,
            receive_timeout=self.timeout,
            raise_exceptions=False,
        )
        if self.settings.ldap_start_tls and not self.settings.ldap_url.startswith("ldaps://"):  # type: ignore[union-attr]  # checked in __init__
            conn.open()
            if not conn.start_tls():
                raise DirectoryUnavailable("the directory refused StartTLS")
        return conn

    def _authenticate(self, username: str, password: str) -> DirectoryUser | None:
        s = self.settings
        service = self._connect(s.ldap_bind_dn, s.ldap_bind_password)
        try:
            if not service.bind():
                log.warning("LDAP service bind failed", extra={"ldap_result": service.result})
                raise DirectoryUnavailable("the directory refused the service account")
            query = s.ldap_user_filter.replace("{username}", escape_filter_chars(username))
            # Only what is needed (never userPassword); unknown names are not an error.
            wanted = [s.ldap_display_name_attr, s.ldap_email_attr, s.ldap_group_attr]
            service.search(s.ldap_user_base, query, SUBTREE, attributes=wanted)
            entries = list(service.response or [])
            found = [e for e in entries if e.get("type") == "searchResEntry"]
            if len(found) != 1:
                return None
            dn = str(found[0]["dn"])
            attributes: dict[str, list[object]] = {
                k: v if isinstance(v, list) else [v] for k, v in found[0]["attributes"].items()
            }
            group_dns = [str(g) for g in attributes.get(s.ldap_group_attr, [])]
            if s.ldap_group_base:
                escaped = escape_filter_chars(dn)
                service.search(
                    s.ldap_group_base,
                    f"(|(member={escaped})(uniqueMember={escaped}))",
                    SUBTREE,
                    attributes=["cn"],
                )
                group_dns += [
                    str(e["dn"])
                    for e in service.response or []
                    if e.get("type") == "searchResEntry"
                ]
        finally:
            _close(service)
        person = self._connect(dn, password)
        try:
            if not person.bind():
                return None
        finally:
            _close(person)
        names = tuple(sorted({group_name(g) for g in group_dns}))
        admin = any(g.casefold() in self.admin_groups for g in (*group_dns, *names))
        return DirectoryUser(
            username=username,
            dn=dn,
            display_name=_first(attributes, s.ldap_display_name_attr) or username,
            email=_first(attributes, s.ldap_email_attr),
            groups=names,
            admin=admin,
        )

    async def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The person if the directory knows ``username`` and ``password``, else None."""
        if not password:
            return None
        try:
            return await asyncio.to_thread(self._authenticate, username, password)
        except LDAPException as exc:
            log.warning("LDAP sign-in failed: %s", type(exc).__name__)
            raise DirectoryUnavailable("the directory is unreachable; retry shortly") from None

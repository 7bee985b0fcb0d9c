"""People: accounts, sign-in (local, LDAP, SSO proxy), browser sessions, groups, audit."""

"""Who is signed in to the console: the admin token signs in as ``admin`` (it acts), the
view token as ``viewer`` (it only looks). The role lives in a signed, expiring session
cookie (itsdangerous), with the CSRF token every action form carries.

The signing key is derived from the tokens: every worker and host that shares them accepts
the cookie, and changing either token signs everybody out."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

from cutover.vocabulary import Role

COOKIE = "cutover_console"
MAX_AGE = 8 * 3600  # seconds a sign-in lasts
SALT = "cutover-console-session"


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    csrf: str

    @property
    def acts(self) -> bool:
        return self.role == Role.ADMIN

    def csrf_ok(self, supplied: str | None) -> bool:
        return supplied is not None and hmac.compare_digest(
            supplied.encode("utf-8"), self.csrf.encode("utf-8")
        )


class Sessions:
    def __init__(
        self, admin_token: SecretStr, view_token: SecretStr | None, *, max_age: int = MAX_AGE
    ) -> None:
        admin = admin_token.get_secret_value().encode("utf-8")
        view = b"" if view_token is None else view_token.get_secret_value().encode("utf-8")
        self.tokens = {Role.ADMIN: admin, Role.VIEWER: view or None}
        self.max_age = max_age
        key = hashlib.sha256(b"cutover-console\0" + admin + b"\0" + view).digest()
        self.serializer = URLSafeTimedSerializer(key, salt=SALT)

    def role_for(self, supplied: str) -> Role | None:
        """The role ``supplied`` signs in as; every token is compared (in constant time)."""
        given = supplied.strip().encode("utf-8")
        found = None
        for role, token in self.tokens.items():
            if token is not None and hmac.compare_digest(given, token):
                found = role
        return found

    def issue(self, role: Role) -> str:
        """A new session's cookie value (a fresh CSRF token with it)."""
        return self.serializer.dumps({"role": str(role), "csrf": secrets.token_urlsafe(24)})

    def read(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None: absent, forged, expired or malformed."""
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(data, dict) or data.get("role") not in tuple(Role):
            return None
        csrf = data.get("csrf")
        if not isinstance(csrf, str) or not csrf:
            return None
        return Session(Role(data["role"]), csrf)

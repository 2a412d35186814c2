"""The console's sign-in: which token gives which role, and a session cookie that cannot be
forged, altered or kept past its age."""

from __future__ import annotations

from pydantic import SecretStr

from cutover.console.sessions import Session, Sessions
from cutover.vocabulary import Role

ADMIN = SecretStr("admin-token-0123")
VIEW = SecretStr("view-token-0123")


def test_each_token_signs_in_as_its_role_and_nothing_else_does() -> None:
    sessions = Sessions(ADMIN, VIEW)
    assert sessions.role_for("admin-token-0123") == Role.ADMIN
    assert sessions.role_for("view-token-0123") == Role.VIEWER
    assert sessions.role_for("admin-token-012") is None
    assert sessions.role_for("") is None
    # Without a view token, an empty one does not sign in as viewer.
    assert Sessions(ADMIN, None).role_for("") is None


def test_an_issued_cookie_reads_back_with_its_role_and_a_csrf_token() -> None:
    sessions = Sessions(ADMIN, VIEW)
    session = sessions.read(sessions.issue(Role.VIEWER))
    assert session is not None and session.role == Role.VIEWER and not session.acts
    admin = sessions.read(sessions.issue(Role.ADMIN))
    assert admin is not None and admin.acts
    assert admin.csrf != session.csrf and len(admin.csrf) >= 24
    assert admin.csrf_ok(admin.csrf)
    assert not admin.csrf_ok(session.csrf) and not admin.csrf_ok(None)


def test_an_altered_forged_or_expired_cookie_is_no_session() -> None:
    sessions = Sessions(ADMIN, VIEW)
    cookie = sessions.issue(Role.VIEWER)
    payload = cookie.partition(".")[0]
    altered = payload[:-1] + ("B" if payload.endswith("A") else "A")
    assert sessions.read(cookie.replace(payload, altered, 1)) is None
    assert sessions.read(cookie[:-2]) is None
    assert sessions.read(None) is None and sessions.read("garbage") is None
    # Signed with other tokens (another deployment, or after a token changed): refused.
    assert Sessions(SecretStr("other-admin-token"), VIEW).read(cookie) is None
    assert Sessions(ADMIN, SecretStr("new-view-token")).read(cookie) is None
    assert Sessions(ADMIN, VIEW, max_age=-1).read(cookie) is None


def test_a_signed_cookie_without_a_known_role_is_no_session() -> None:
    sessions = Sessions(ADMIN, VIEW)
    forged = sessions.serializer.dumps({"role": "root", "csrf": "x"})
    assert sessions.read(forged) is None
    assert sessions.read(sessions.serializer.dumps({"role": "admin"})) is None
    assert Session(Role.ADMIN, "x").acts

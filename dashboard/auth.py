"""Accounts, roles, sessions and the request checks every dashboard endpoint goes through.

- Passwords are argon2id hashes (argon2-cffi defaults); there is no default password anywhere: the
  first organizer is created with ``meetvar users add --role organizer NAME`` (password from a prompt
  or stdin), or through a one-time login token printed by ``meetvar demo``.
- A session is a random id kept server side (as its sha256, so a leaked database holds no live
  session) and sent to the browser as an itsdangerous-signed cookie: HttpOnly, SameSite=Strict, Secure
  when served over https. Logging out or disabling an account ends it at once.
- CSRF: SameSite=Strict keeps the cookie off cross-site requests, and every unsafe method must also
  carry an Origin (or Referer) that is one of the dashboard's own origins. WebSocket upgrades with a
  foreign Origin are refused too (browsers always send Origin on a WebSocket).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import HTTPException, Request, WebSocket
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine, delete, insert, select, update

from dashboard import db

ORGANIZER = "organizer"
HEAD_REFEREE = "head_referee"
SIDE_REFEREE = "side_referee"
JURY = "jury"
LIFTER = "lifter"
COACH = "coach"
VIEWER = "viewer"
ROLES: tuple[str, ...] = (ORGANIZER, HEAD_REFEREE, SIDE_REFEREE, JURY, LIFTER, COACH, VIEWER)

EVERYONE = frozenset(ROLES)
REFEREES = frozenset({HEAD_REFEREE, SIDE_REFEREE})
OFFICIALS = frozenset({ORGANIZER, HEAD_REFEREE, SIDE_REFEREE, JURY})
APPELLANTS = frozenset({LIFTER, COACH})

COOKIE = "meetvar_session"
SESSION_TTL_S = 12 * 3600  # one meet day
LOGIN_TOKEN_TTL_S = 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_PASSWORD_LEN = 10


def _now_us() -> int:
    return time.time_ns() // 1000


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: str
    lifter: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "lifter": self.lifter}


ANONYMOUS_VIEWER = User(id=0, name="anonymous", role=VIEWER)


class AuthError(ValueError):
    """A request the auth layer refuses; ``str`` is safe to show the user."""


class _LoginThrottle:
    """At most ``limit`` failed logins per account name per ``window_s``: slows password guessing
    without locking the real user out for long."""

    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: defaultdict[str, deque[float]] = defaultdict(deque)

    def blocked(self, name: str) -> bool:
        q = self._fails[name.lower()]
        while q and q[0] < time.monotonic() - self.window_s:
            q.popleft()
        return len(q) >= self.limit

    def failed(self, name: str) -> None:
        self._fails[name.lower()].append(time.monotonic())

    def succeeded(self, name: str) -> None:
        self._fails.pop(name.lower(), None)


class Auth:
    def __init__(
        self,
        engine: Engine,
        *,
        allowed_origins: Iterable[str] | None = None,
        anonymous_viewer: bool = False,
        secret: str | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.engine = engine
        # None: the origin of the request itself (Host header) is the only one allowed.
        self.allowed_origins = None if allowed_origins is None else {o.rstrip("/") for o in allowed_origins}
        self.anonymous_viewer = anonymous_viewer
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self._signer = URLSafeTimedSerializer(secret or self._stored_secret(), salt="meetvar-session")
        self.throttle = _LoginThrottle()

    def _stored_secret(self) -> str:
        """The cookie-signing key, made once per database so sessions survive a restart."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.settings.c.value).where(db.settings.c.key == "session_secret")
            ).first()
            if row is not None:
                return str(row.value)
            value = secrets.token_urlsafe(48)
            conn.execute(insert(db.settings).values(key="session_secret", value=value))
            return value

    # --- accounts -----------------------------------------------------------------------------

    def create_user(self, name: str, role: str, password: str | None, lifter: str | None = None) -> User:
        """``password=None`` makes an account that can only be entered through a login token."""
        name = name.strip()
        if not name or len(name) > 100:
            raise AuthError("a user name is 1 to 100 characters")
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if password is not None and len(password) < MIN_PASSWORD_LEN:
            raise AuthError(f"a password needs at least {MIN_PASSWORD_LEN} characters")
        if role in APPELLANTS and not lifter:
            raise AuthError("a lifter or coach account needs the lifter's name")
        secret = password if password is not None else secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if conn.execute(select(db.users.c.id).where(db.users.c.name == name)).first() is not None:
                raise AuthError(f"user {name!r} exists already")
            res = conn.execute(
                insert(db.users).values(
                    name=name,
                    role=role,
                    password_hash=self.hasher.hash(secret),
                    lifter=lifter,
                    active=True,
                    created_us=_now_us(),
                )
            )
            assert res.inserted_primary_key is not None
            return User(int(res.inserted_primary_key[0]), name, role, lifter)

    def users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.users).where(db.users.c.active).order_by(db.users.c.id)).mappings()
            return [User(r["id"], r["name"], r["role"], r["lifter"]) for r in rows]

    def user_by_name(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(db.users).where(db.users.c.name == name)).mappings().first()
        return None if r is None else User(r["id"], r["name"], r["role"], r["lifter"])

    def set_active(self, name: str, active: bool) -> None:
        with self.engine.begin() as conn:
            res = conn.execute(update(db.users).where(db.users.c.name == name).values(active=active))
            if res.rowcount == 0:
                raise AuthError(f"no user {name!r}")
            if not active:
                uid = conn.execute(select(db.users.c.id).where(db.users.c.name == name)).scalar_one()
                conn.execute(delete(db.sessions).where(db.sessions.c.user_id == uid))

    def authenticate(self, name: str, password: str) -> User | None:
        if self.throttle.blocked(name):
            raise AuthError("too many failed logins for this name; wait a minute")
        with self.engine.connect() as conn:
            r = conn.execute(select(db.users).where(db.users.c.name == name)).mappings().first()
        stored = r["password_hash"] if r is not None and r["active"] else self._dummy_hash
        try:
            # Verify even for an unknown name, so timing does not tell which names exist.
            self.hasher.verify(stored, password)
            ok = r is not None and bool(r["active"])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or r is None:
            self.throttle.failed(name)
            return None
        self.throttle.succeeded(name)
        if self.hasher.check_needs_rehash(stored):
            with self.engine.begin() as conn:
                conn.execute(
                    update(db.users)
                    .where(db.users.c.id == r["id"])
                    .values(password_hash=self.hasher.hash(password))
                )
        return User(r["id"], r["name"], r["role"], r["lifter"])

    # --- one-time login tokens (how the demo lets its user in without any default password) -----

    def issue_login_token(self, user: User, ttl_s: int = LOGIN_TOKEN_TTL_S, token: str | None = None) -> str:
        """Store a one-time login token (a new one, or ``token``). Issuing a given token again is a no-op:
        a dashboard the supervisor restarts is handed the demo's token again, and must neither crash on
        it nor re-arm it (a used token stays used, its expiry stays where it was)."""
        token = token or secrets.token_urlsafe(24)
        with self.engine.begin() as conn:
            known = conn.execute(
                select(db.login_tokens.c.token_hash).where(db.login_tokens.c.token_hash == _sha256(token))
            ).first()
            if known is not None:
                return token
            conn.execute(
                insert(db.login_tokens).values(
                    token_hash=_sha256(token), user_id=user.id, expires_us=_now_us() + ttl_s * 1_000_000
                )
            )
        return token

    def redeem_login_token(self, token: str) -> User | None:
        """Single use: the UPDATE that marks it used is also the check that it was unused."""
        now = _now_us()
        with self.engine.begin() as conn:
            res = conn.execute(
                update(db.login_tokens)
                .where(db.login_tokens.c.token_hash == _sha256(token))
                .where(db.login_tokens.c.used_us.is_(None))
                .where(db.login_tokens.c.expires_us > now)
                .values(used_us=now)
            )
            if res.rowcount != 1:
                return None
            r = (
                conn.execute(
                    select(db.users)
                    .join(db.login_tokens, db.login_tokens.c.user_id == db.users.c.id)
                    .where(db.login_tokens.c.token_hash == _sha256(token))
                )
                .mappings()
                .one()
            )
        if not r["active"]:
            return None
        return User(r["id"], r["name"], r["role"], r["lifter"])

    # --- sessions -----------------------------------------------------------------------------

    def start_session(self, user: User) -> str:
        """Returns the signed cookie value."""
        sid = secrets.token_urlsafe(32)
        now = _now_us()
        with self.engine.begin() as conn:
            conn.execute(delete(db.sessions).where(db.sessions.c.expires_us < now))
            conn.execute(
                insert(db.sessions).values(
                    sid_hash=_sha256(sid),
                    user_id=user.id,
                    created_us=now,
                    expires_us=now + SESSION_TTL_S * 1_000_000,
                )
            )
        return self._signer.dumps(sid)

    def _sid(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            sid = self._signer.loads(cookie, max_age=SESSION_TTL_S)
        except BadSignature:
            return None
        return sid if isinstance(sid, str) else None

    def session_user(self, cookie: str | None) -> User | None:
        sid = self._sid(cookie)
        if sid is None:
            return None
        with self.engine.connect() as conn:
            r = (
                conn.execute(
                    select(db.users)
                    .join(db.sessions, db.sessions.c.user_id == db.users.c.id)
                    .where(db.sessions.c.sid_hash == _sha256(sid))
                    .where(db.sessions.c.expires_us > _now_us())
                    .where(db.users.c.active)
                )
                .mappings()
                .first()
            )
        return None if r is None else User(r["id"], r["name"], r["role"], r["lifter"])

    def end_session(self, cookie: str | None) -> None:
        sid = self._sid(cookie)
        if sid is not None:
            with self.engine.begin() as conn:
                conn.execute(delete(db.sessions).where(db.sessions.c.sid_hash == _sha256(sid)))

    # --- origin checks ------------------------------------------------------------------------

    def origin_allowed(self, origin: str, host_header: str | None, scheme: str) -> bool:
        origin = origin.rstrip("/")
        if self.allowed_origins is not None:
            return origin in self.allowed_origins
        return host_header is not None and origin == f"{scheme}://{host_header}"

    def check_unsafe_request(self, request: Request) -> None:
        """CSRF defence in depth behind SameSite=Strict: an unsafe method must come from our pages."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            referer = request.headers.get("referer")
            if referer:
                parts = urlsplit(referer)
                origin = f"{parts.scheme}://{parts.netloc}"
        scheme = "https" if request.url.scheme in ("https", "wss") else "http"
        if origin is None or not self.origin_allowed(origin, request.headers.get("host"), scheme):
            raise HTTPException(403, "cross-origin request refused (no or foreign Origin)")

    def websocket_origin_ok(self, socket: WebSocket) -> bool:
        origin = socket.headers.get("origin")
        if origin is None:
            return True  # not a browser: it has no ambient cookies to abuse, and must still log in
        scheme = "https" if socket.url.scheme == "wss" else "http"
        return self.origin_allowed(origin, socket.headers.get("host"), scheme)

    # --- the dependency every protected route uses ----------------------------------------------

    def user_for(self, cookie: str | None) -> User | None:
        user = self.session_user(cookie)
        if user is None and self.anonymous_viewer:
            return ANONYMOUS_VIEWER
        return user

    def require(self, roles: Iterable[str]) -> Callable[[Request], User]:
        allowed = frozenset(roles)
        unknown = allowed - EVERYONE
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")

        def dependency(request: Request) -> User:
            if request.method in UNSAFE_METHODS:
                self.check_unsafe_request(request)
            user = self.user_for(request.cookies.get(COOKIE))
            if user is None:
                raise HTTPException(401, "log in first")
            if user.role not in allowed:
                raise HTTPException(403, f"the {user.role} role may not do this")
            return user

        dependency.allowed_roles = allowed  # type: ignore[attr-defined]
        return dependency

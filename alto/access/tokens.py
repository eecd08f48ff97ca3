"""Access tokens: the editor token (ALTO_TOKEN, `--token`) and the viewer token (ALTO_VIEWER_TOKEN,
`--viewer-token`).

`alto app` decides which tokens the server runs with (`app_tokens`) and hands them to the Streamlit
process in its environment, never on its command line (which `ps` shows). With no token at all the
dashboard is open, as it always was on 127.0.0.1; bound to any other address it needs one, so a
token is generated and printed in the URL that carries it, as Jupyter does.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from alto.access.roles import EDITOR, VIEWER

EDITOR_ENV = "ALTO_TOKEN"
VIEWER_ENV = "ALTO_VIEWER_TOKEN"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # every interface


def new_token() -> str:
    """A fresh editor token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def same_token(given: str, expected: str) -> bool:
    """Whether two tokens are equal, in time that depends on neither: both are hashed to 32 bytes
    first, so not even the expected token's length shows through hmac.compare_digest."""
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest())


@dataclass(frozen=True, repr=False)
class Tokens:
    """The tokens a server accepts; an empty string counts as unset. No token: the app is open."""

    editor: str | None = None
    viewer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "editor", self.editor or None)
        object.__setattr__(self, "viewer", self.viewer or None)
        if self.viewer is not None and self.viewer == self.editor:
            raise ValueError("the viewer token must differ from the editor token")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Tokens:
        return cls(editor=environ.get(EDITOR_ENV), viewer=environ.get(VIEWER_ENV))

    def environ(self) -> dict[str, str]:
        """The environment variables that carry these tokens to the server process."""
        return {name: token for name, token in ((EDITOR_ENV, self.editor), (VIEWER_ENV, self.viewer)) if token}

    @property
    def required(self) -> bool:
        """Whether a visitor needs a token at all."""
        return self.editor is not None or self.viewer is not None

    def role_of(self, given: str) -> str | None:
        """The role `given` grants (EDITOR or VIEWER), None for a wrong token. Both tokens are always
        compared, so the time taken does not tell which one matched."""
        editor = self.editor is not None and same_token(given, self.editor)
        viewer = self.viewer is not None and same_token(given, self.viewer)
        return EDITOR if editor else VIEWER if viewer else None

    def __repr__(self) -> str:  # never the tokens themselves: reprs end up in logs
        return f"Tokens(editor={'set' if self.editor else 'unset'}, viewer={'set' if self.viewer else 'unset'})"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may well resolve to a public address


def token_urls(host: str, port: int, token: str) -> list[str]:
    """The URLs that open the dashboard with `token`; for every interface (0.0.0.0) the machine's
    name and 127.0.0.1, as Jupyter prints them."""
    hosts = [socket.gethostname(), "127.0.0.1"] if host in WILDCARD_HOSTS else [host]
    return [f"http://{f'[{h}]' if ':' in h else h}:{port}/?token={token}" for h in hosts]


def app_tokens(host: str, port: int, *, editor: str | None, viewer: str | None, no_auth: bool,
               generate: Callable[[], str] = new_token) -> tuple[Tokens, list[str]]:
    """The tokens `alto app --host HOST --port PORT` runs with, and the lines to print about them.

    Loopback and no token: open, as before. Another address (or a viewer token alone) and no editor
    token: a new editor token, printed in the URL that carries it. `no_auth`: open anywhere, with a
    warning. Tokens the user set are never printed.
    """
    if no_auth:
        if editor or viewer:
            raise ValueError(f"--no-auth cannot be combined with an access token (--token, --viewer-token, "
                             f"{EDITOR_ENV}, {VIEWER_ENV}); drop one or the other")
        warning = (f"WARNING: --no-auth: anyone who can reach port {port} on {host or 'every interface'} can "
                   "launch, cancel and delete runs and read every result.")
        return Tokens(), [warning]
    tokens = Tokens(editor=editor, viewer=viewer)
    if tokens.editor is None and (tokens.viewer is not None or not is_loopback(host)):
        tokens = Tokens(editor=generate(), viewer=tokens.viewer)
        lines = ["Access needs a token. Editor link (launch, cancel, delete; share it only with your team):",
                 *(f"    {url}" for url in token_urls(host, port, tokens.editor))]
    elif tokens.editor is not None:
        lines = [f"Access needs a token: the editor token you set ({EDITOR_ENV} or --token)."]
    else:
        return tokens, []
    if tokens.viewer is not None:
        lines.append(f"Read-only link: the same address with ?token=<the viewer token you set ({VIEWER_ENV} or "
                     "--viewer-token)>.")
    return tokens, lines

"""What is a secret, and masking it: the one place that decides both.

    is_secret_name(name)              a variable or flag name that says "credential"
    url_passwords(text)               the userinfo passwords of the URLs in `text`
    mask_urls(text)                   `scheme://user:pw@host` → `scheme://user:***@host`
    server_secrets(server, environ)   every value one server's entry expands to that is a secret
    fleet_secrets(config, environ)    the same for the whole fleet plus the daemon's own tokens
    Masker / MASK                     replaces known values (and URL passwords) with `***`

Masking is by value: whatever a credential-named variable expands to (`${GITHUB_TOKEN}`,
`${GITHUB_TOKEN:-}`, a literal under `env.API_KEY`), the value after a secret-named flag
(`--api-key VALUE`, `--token=VALUE`), every URL password in an expanded value (`${POSTGRES_URL}`
→ `postgres://user:pw@host`), the HTTP and client tokens. `MASK` is applied wherever the daemon
records text it did not write itself or that quotes such text: each child's stderr line at the
source (ring, log files, `mcpctl logs`, events, exit reasons), state reasons, the daemon's log.
Independently of what is known, any `scheme://user:password@` in a masked text loses its password.

Values shorter than `MIN_SECRET_LENGTH` are not masked by value (masking "a" or "1" would garble
every line); a short password inside a URL is still masked by the URL rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from . import FleetConfig, ServerConfig

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "Masker",
    "fleet_secrets",
    "is_secret_name",
    "mask_urls",
    "server_secrets",
    "url_passwords",
]

MIN_SECRET_LENGTH = 6
MASKED = "***"

# Words that make a name a credential. A name is split into words at "_", "-", "." and camelCase
# humps, so GITHUB_PERSONAL_ACCESS_TOKEN, apiKey and --auth-token match, but PATH (not PAT),
# MONKEY (not KEY) and KEYBOARD_LAYOUT do not.
_SECRET_WORDS = frozenset({
    "KEY", "APIKEY", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "PWD",
    "PAT", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "AUTHORIZATION", "PRIVATE", "COOKIE",
    "SESSION", "BEARER", "DSN",
})
# The shell's working-directory variables end in PWD but hold a path.
_NOT_SECRET = frozenset({"PWD", "OLDPWD"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<at>@)")


def is_secret_name(name: str) -> bool:
    """True for a variable, env key or flag name that says it holds a credential."""
    bare = name.lstrip("-")
    if bare.upper() in _NOT_SECRET:
        return False
    words = {w.upper() for w in _WORD.findall(bare)}
    return bool(words & _SECRET_WORDS)


def url_passwords(text: str) -> list[str]:
    """The passwords of every `scheme://user:password@host` in `text`, as written and decoded."""
    found: list[str] = []
    for match in _URL_USERINFO.finditer(text):
        for form in (match["pw"], unquote(match["pw"])):
            if form not in found:
                found.append(form)
    return found


def mask_urls(text: str) -> str:
    """`text` with every URL's userinfo password replaced by `***`."""
    if "://" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: m["head"] + MASKED + m["at"], text)


def _reference_values(raw: str, environ: Mapping[str, str]) -> Iterator[str]:
    """What each credential-named `${NAME}` / `${NAME:-default}` in `raw` expands to."""
    from . import expand, references

    for name, default in references(raw):
        if not is_secret_name(name):
            continue
        value = environ.get(name, "")
        if not value and default is not None:
            value = expand(default, environ)
        if value:
            yield value


def _flag_values(args: Iterable[str]) -> Iterator[str]:
    """Values given to secret-named flags: `--api-key VALUE`, `--token=VALUE`."""
    previous = ""
    for arg in args:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-") and is_secret_name(flag):
            yield value
        elif previous.startswith("-") and "=" not in previous and is_secret_name(previous):
            yield arg
        previous = arg


def server_secrets(server: ServerConfig, environ: Mapping[str, str]) -> set[str]:
    """Every secret value `server`'s entry stands for in `environ` (the child's view of it)."""
    from . import expand

    found: set[str] = set()
    raws = [server.command, *server.args, *server.env.values(), *([server.cwd] if server.cwd else [])]
    expanded: list[str] = []
    for raw in raws:
        try:
            found.update(_reference_values(raw, environ))
            expanded.append(expand(raw, environ))
        except ValueError:  # a malformed reference never got past the config; nothing to expand
            continue
    for key, raw in server.env.items():
        if is_secret_name(key):
            try:
                found.add(expand(raw, environ))
            except ValueError:
                continue
    found.update(environ.get(name, "") for name in server.requires_env)
    found.update(_flag_values(expand(a, environ) for a in server.args if _expandable(a)))
    for text in expanded:
        found.update(url_passwords(text))
    found.discard("")
    return found


def _expandable(raw: str) -> bool:
    from . import references

    try:
        references(raw)
    except ValueError:
        return False
    return True


def fleet_secrets(config: FleetConfig, environ: Mapping[str, str]) -> set[str]:
    """Every server's secrets, the HTTP and client tokens, the `[cluster]` secret, and the
    passwords in the cache and cluster Redis URLs."""
    found: set[str] = set()
    for server in config.servers.values():
        found |= server_secrets(server, environ)
    if config.http.token:
        found.add(config.http.token)
    found.update(c.token for c in config.clients.values() if c.token)
    if config.cluster.secret:
        found.add(config.cluster.secret)
    found.update(url_passwords(config.cache.url))
    found.update(url_passwords(config.cluster.url or ""))
    return found


class Masker:
    """Replaces known secret values with `***` in any text, and every URL's password."""

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None

    def update(self, secrets: Iterable[str]) -> None:
        """Mask exactly these values from now on (replacing the previous set)."""
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASKED, text)
        return mask_urls(text)


MASK = Masker()

"""`mcpctl import`: MCP client configs → `fleet.toml` entries.

    discover(home, cwd, environ)      the usual places, those that exist
    load_source(path, fmt)            JSON(C) → Source: its format and raw server entries
    convert(source)                   each entry → Imported (a fleet entry) or Skipped (with a reason)
    resolve_pins(imported, offline)   `npx -y PKG` / `uvx PKG` → exact pins and bin names
    render_toml(imported, skipped)    text that `supervisor.config.parse_config` accepts
    merge_into(path, imported, force) `--write`: add them to the fleet file, atomically

Client formats and their variable syntax:

    claude-desktop  {"mcpServers": ...}            no variables: every value is literal
    cursor          .cursor/mcp.json               ${env:X}, ${userHome}, ${workspaceFolder}
    windsurf        ~/.codeium/windsurf/...        as cursor
    vscode          .vscode/mcp.json {"servers"}   ${env:X}, ${input:id} (+ "inputs"), ${workspaceFolder}
    claude-code     .mcp.json, ~/.claude.json      ${VAR}, ${VAR:-default}: already our syntax

Secrets are never printed: a literal value under a secret-looking env key or argument flag
(`supervisor.config.secrets_mask.is_secret_name`, the same rule the daemon masks by), a value
that looks like a known token, or the password in a URL becomes a `${NAME}` placeholder, listed in
`requires_env` so the server is `unavailable: NAME is not set` until the daemon's environment has it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisor.config.secrets_mask import is_secret_name

FORMATS = ("claude-desktop", "cursor", "windsurf", "vscode", "claude-code", "generic")
_LABELS = {
    "claude-desktop": "Claude Desktop", "cursor": "Cursor", "windsurf": "Windsurf",
    "vscode": "VS Code", "claude-code": "Claude Code", "generic": "mcpServers JSON",
}

# Values that are credentials whatever their key: the well-known token prefixes.
_SECRET_VALUE = re.compile(
    r"^(?:gh[pousr]_|github_pat_|glpat-|sk-|sk_(?:live|test)_|rk_live_|xox[abprse]-|AKIA[0-9A-Z]{12}|"
    r"AIza[0-9A-Za-z_-]{20}|tvly-|ya29\.|eyJ[A-Za-z0-9_-]{10,}\.)"
)
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<tail>@.*)$")
# Characters a client's server name may not hold at all (others, like spaces, are cleaned).
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f\"'\[\]=#\\]")
_INDEX_FLAGS = {"--index", "--index-url", "--extra-index-url", "--default-index", "--registry", "-i"}
_EXACT_VERSION = re.compile(r"\d[0-9A-Za-z.+_-]*")
_SEMVER_EXACT = re.compile(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?")


class UnreadableClientConfig(Exception):
    """A client config that cannot be read at all (not JSON, wrong shape)."""


@dataclass
class Source:
    """One client config file: its format and its raw server entries, in file order."""

    path: Path
    fmt: str
    servers: dict[str, Any]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return _LABELS[self.fmt]


@dataclass
class Imported:
    """One fleet entry, ready to render."""

    name: str
    command: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    requires_env: list[str] = field(default_factory=list)
    package: str | None = None
    extra_requires: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Set for npx/uvx entries whose pin or bin name still has to be looked up.
    want: tuple[str, str, str | None] | None = None  # (ecosystem, name, version or range or None)
    explicit_command: bool = False
    other_index: str | None = None  # the npx/uvx flag that named another package index


@dataclass(frozen=True)
class Skipped:
    name: str
    source: str
    reason: str


# --- finding and reading client configs ---------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A client config found in one of the usual places."""

    path: Path
    fmt: str
    project: bool
    """In the current directory (`.mcp.json`, `.vscode/mcp.json`, `.cursor/mcp.json`): written by
    whoever wrote the repository, which may be a fresh clone, not by the user."""


def discover(home: Path, cwd: Path, environ: Mapping[str, str]) -> list[Found]:
    """The usual config locations of the clients we read, those that exist, most specific last."""
    app = home / "Library" / "Application Support"
    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    candidates: list[tuple[Path, str, bool]] = [
        (xdg / "Claude" / "claude_desktop_config.json", "claude-desktop", False),
        (app / "Claude" / "claude_desktop_config.json", "claude-desktop", False),
        (home / ".cursor" / "mcp.json", "cursor", False),
        (home / ".codeium" / "windsurf" / "mcp_config.json", "windsurf", False),
        (xdg / "Code" / "User" / "mcp.json", "vscode", False),
        (app / "Code" / "User" / "mcp.json", "vscode", False),
        (home / ".claude.json", "claude-code", False),
        (cwd / ".cursor" / "mcp.json", "cursor", True),
        (cwd / ".vscode" / "mcp.json", "vscode", True),
        (cwd / ".mcp.json", "claude-code", True),
    ]
    if environ.get("APPDATA"):
        candidates.insert(0, (Path(environ["APPDATA"]) / "Claude" / "claude_desktop_config.json",
                              "claude-desktop", False))
    seen: set[Path] = set()
    found = []
    for path, fmt, project in candidates:
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            found.append(Found(path, fmt, project))
    return found


def detect_format(path: Path, doc: Mapping[str, Any]) -> str:
    """The client a file belongs to, from its location first and its content second."""
    if path.name == "claude_desktop_config.json":
        return "claude-desktop"
    if path.parent.name == ".cursor":
        return "cursor"
    if path.name == "mcp_config.json" and path.parent.name == "windsurf":
        return "windsurf"
    if path.parent.name == ".vscode" or ("servers" in doc and "mcpServers" not in doc):
        return "vscode"
    if path.name in {".mcp.json", ".claude.json"}:
        return "claude-code"
    return "generic"


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas (VS Code's format) → JSON. Strings are kept intact."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def load_source(path: Path, fmt: str | None = None, *, cwd: Path | None = None) -> Source:
    """Read one client config. Raises UnreadableClientConfig with a message naming the file."""
    path = path.absolute()  # ${workspaceFolder} and the output's comments need the real place
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableClientConfig(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(strip_jsonc(text))
    except ValueError as exc:
        raise UnreadableClientConfig(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UnreadableClientConfig(f"{path}: expected a JSON object at the top")
    fmt = fmt or detect_format(path, doc)
    servers = _server_table(doc, fmt, cwd or Path.cwd())
    if servers is None:
        raise UnreadableClientConfig(f"{path}: no \"mcpServers\" or \"servers\" object found")
    inputs = {str(i["id"]): i for i in doc.get("inputs", []) if isinstance(i, dict) and "id" in i}
    return Source(path, fmt, servers, inputs)


def _server_table(doc: Mapping[str, Any], fmt: str, cwd: Path) -> dict[str, Any] | None:
    if fmt == "vscode":
        table = doc.get("servers", doc.get("mcp", {}).get("servers") if isinstance(doc.get("mcp"), dict)
                        else None)
        return dict(table) if isinstance(table, dict) else None
    table = doc.get("mcpServers")
    found = dict(table) if isinstance(table, dict) else None
    # ~/.claude.json keeps project-scoped servers under projects[<dir>].mcpServers.
    project = doc.get("projects", {}).get(str(cwd)) if isinstance(doc.get("projects"), dict) else None
    if isinstance(project, dict) and isinstance(project.get("mcpServers"), dict):
        found = (found or {}) | project["mcpServers"]
    return found


# --- converting entries --------------------------------------------------------------------------


def fleet_name(name: str) -> str:
    """A client's server name as a fleet server name (letters, digits, `_ . -`, no `__`)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "server"
    return re.sub(r"_{2,}", "_", cleaned)


def env_var_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper() or "VALUE"
    return f"_{name}" if name[0].isdigit() else name


class _Translator:
    """Rewrites one source's variable syntax into ours and collects what it had to invent."""

    def __init__(self, source: Source, server: str) -> None:
        self.source = source
        self.server = server
        self.required: list[str] = []
        self.notes: list[str] = []

    def __call__(self, value: str) -> str:
        if self.source.fmt in {"claude-code", "generic"}:
            return self._ours_already(value)
        if self.source.fmt == "claude-desktop":
            return _escape_dollars(value)
        return self._vscode_like(value)

    def _ours_already(self, value: str) -> str:
        from supervisor.config import referenced_vars

        try:
            referenced_vars(value)
        except ValueError:
            return _escape_dollars(value)  # not a reference after all: keep the text literally
        return value

    def _vscode_like(self, value: str) -> str:
        out: list[str] = []
        pos = 0
        for match in re.finditer(r"\$\{([^}]*)\}", value):
            out.append(_escape_dollars(value[pos : match.start()]))
            out.append(self._reference(match.group(1)))
            pos = match.end()
        out.append(_escape_dollars(value[pos:]))
        return "".join(out)

    def _reference(self, ref: str) -> str:
        kind, _, arg = ref.partition(":")
        workspace = self.source.path.parent.parent if self.source.path.parent.name in {
            ".vscode", ".cursor"} else self.source.path.parent
        if kind == "env" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg):
            return "${" + arg + "}"
        if kind == "input" and self.source.fmt == "vscode":
            var = env_var_name(arg)
            spec = self.source.inputs.get(arg, {})
            described = f" ({spec['description']})" if spec.get("description") else ""
            self.notes.append(f"{var}: was VS Code input '{arg}'{described}; "
                              f"set it with: mcpctl secret set {fleet_name(self.server)} {var}")
            self._require(var)
            return "${" + var + "}"
        if ref == "userHome":
            return "${HOME}"
        if ref == "workspaceFolder":
            return _escape_dollars(str(workspace))
        if ref == "workspaceFolderBasename":
            return _escape_dollars(workspace.name)
        if ref == "pathSeparator":
            return "/"
        var = env_var_name(f"{self.server}_{ref}")
        self.notes.append(f"{var}: stands for '${{{ref}}}', which the supervisor cannot evaluate")
        self._require(var)
        return "${" + var + "}"

    def _require(self, var: str) -> None:
        if var not in self.required:
            self.required.append(var)

    def secret(self, hint: str) -> str:
        """A placeholder for a literal secret that must not be printed."""
        var = env_var_name(hint)
        self._require(var)
        self.notes.append(f"{var}: a literal secret in {self.source.path.name} was replaced; "
                          f"set it with: mcpctl secret set {fleet_name(self.server)} {var}")
        return "${" + var + "}"


def _mask(text: str) -> str:
    """Comments quote the original command line; a registry or index URL in it may carry a password."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]+@", r"\1***@", text)


def _escape_dollars(text: str) -> str:
    """Literal text in our syntax: `$` before `{` or `$` is written `$$`."""
    return re.sub(r"\$(?=[{$])", "$$", text)


def _is_placeholder(value: str) -> bool:
    return bool(re.fullmatch(r"\$\{[^}]+\}", value))


def _looks_secret_value(value: str) -> bool:
    return bool(_SECRET_VALUE.match(value))


def convert(source: Source) -> tuple[list[Imported], list[Skipped]]:
    """Every entry of `source` as a fleet entry or a skip with its reason."""
    imported: list[Imported] = []
    skipped: list[Skipped] = []
    for raw_name, entry in source.servers.items():
        result = convert_entry(str(raw_name), entry, source)
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            imported.append(result)
    return imported, skipped


def convert_entry(raw_name: str, entry: Any, source: Source) -> Imported | Skipped:
    where = str(source.path)
    if not isinstance(entry, dict):
        return Skipped(raw_name, where, "not a JSON object")
    kind = str(entry.get("type", "stdio")).lower()
    if entry.get("url") or entry.get("serverUrl") or kind in {"http", "sse", "streamable-http", "ws"}:
        return Skipped(raw_name, where, "remote server (url): the supervisor runs local stdio servers; "
                                        "point the client at its URL directly")
    if entry.get("disabled") is True:
        return Skipped(raw_name, where, "disabled in the client")
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        return Skipped(raw_name, where, "no command")
    if _UNSAFE_NAME_CHARS.search(raw_name):
        return Skipped(comment_text(raw_name), where,
                       "the name holds control characters or TOML syntax (newline, quote, bracket, "
                       "'=' or '#'): refused, a name must never be able to write TOML")
    from supervisor.config import name_problem

    name = fleet_name(raw_name)
    # A name with nothing to keep ("..", "-") is refused for what it is, not renamed to "server".
    problem = name_problem(raw_name if name == "server" != raw_name else name)
    if problem:
        return Skipped(raw_name, where, problem)
    tr = _Translator(source, name)
    args = [str(a) for a in entry.get("args", []) if isinstance(a, (str, int, float))]
    item = Imported(name=name, command=command)
    if name != raw_name:
        item.notes.append(f"named '{raw_name}' in the client")
    _set_program(item, command, args, tr)
    smuggled = [r for r in [*(item.want[1:2] if item.want else []), *item.extra_requires]
                if r.lstrip().startswith("-")]
    if smuggled:
        return Skipped(raw_name, where, f"{smuggled[0]!r} is an option to npm/pip, not a package: "
                                        "refused (it could make `mcpctl install` use another index)")
    if item.other_index and item.want:
        return Skipped(raw_name, where, f"installs from another package index ({item.other_index}); "
                                        "`mcpctl install` uses the default one: install it yourself "
                                        "and set command to its path")
    env = entry.get("env") or {}
    for key, value in env.items() if isinstance(env, dict) else ():
        item.env[str(key)] = _env_value(str(key), str(value), tr)
    if isinstance(entry.get("cwd"), str):
        item.cwd = tr(entry["cwd"])
    if entry.get("envFile"):
        item.notes.append(f"envFile {entry['envFile']} not imported: put its variables into the "
                          "daemon's environment")
    item.requires_env = tr.required
    item.notes.extend(tr.notes)
    return item


def _env_value(key: str, value: str, tr: _Translator) -> str:
    if is_secret_name(key) or _looks_secret_value(value):
        translated = tr(value)
        if "${" in translated.replace("$${", ""):
            return translated  # already a reference (${env:X}, ${input:id}, ${X})
        if not value or _plainly_not_secret(value):
            return translated
        return tr.secret(key)
    return _args_secret(tr(value), tr, key)


def _plainly_not_secret(value: str) -> bool:
    """Values under a secret-looking key that are safe to show: a file path (the credentials file,
    not its content), a boolean, a URL without a password. Anything else is hidden: a false alarm
    costs a placeholder, a miss leaks a credential."""
    if value.lower() in {"true", "false"} or value.startswith(("/", "~/", "./")):
        return True
    return bool(re.match(r"https?://[^@\s]*$", value)) and not re.search(r"[?&][^=]*(key|token)", value, re.I)


def _args_secret(value: str, tr: _Translator, hint: str) -> str:
    """Hide a URL's password and known token shapes inside an argument or env value."""
    url = _URL_PASSWORD.match(value)
    if url and not _is_placeholder(url["pw"]):
        return url["head"] + tr.secret(f"{tr.server}_{hint}_password") + url["tail"]
    if _looks_secret_value(value) or re.search(r"(?i)\b(bearer|basic|token)\s+[^\s$]{8,}", value):
        return tr.secret(f"{tr.server}_{hint}")
    return value


def _set_program(item: Imported, command: str, args: list[str], tr: _Translator) -> None:
    """command/args, with `npx -y PKG` / `uvx PKG` (and `cmd /c` around them) turned into a package."""
    if Path(command).name.lower() in {"cmd", "cmd.exe"} and args[:1] and args[0].lower() == "/c":
        command, args = args[1], args[2:]
    base = Path(command).name.lower()
    if base in {"npx", "npx.cmd"} and _from_npx(item, args, tr):
        return
    if base in {"uvx", "uvx.exe"} and _from_uvx(item, args, tr):
        return
    if base in {"npx", "npx.cmd", "uvx", "uvx.exe"}:
        item.notes.append(f"still runs {base} at run time (a source that cannot be pinned): slow starts, "
                          "needs the network; install it yourself and set command to its path")
    item.command = tr(command)
    item.args = _translate_args(args, tr)


def _translate_args(args: Sequence[str], tr: _Translator) -> list[str]:
    out: list[str] = []
    previous = ""
    for arg in args:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-") and is_secret_name(flag) and value:
            out.append(f"{flag}=" + (tr(value) if "${" in value else tr.secret(f"{tr.server}_{flag}")))
        elif previous.startswith("-") and is_secret_name(previous) and "${" not in arg:
            out.append(tr.secret(f"{tr.server}_{previous}"))
        else:
            out.append(_args_secret(tr(arg), tr, "arg"))
        previous = arg if not eq else ""
    return out


_NPX_VALUE_FLAGS = {"-p", "--package", "-c", "--call", "--registry", "--cache", "--userconfig"}


def _from_npx(item: Imported, args: list[str], tr: _Translator) -> bool:
    packages: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag, eq, value = args[i].partition("=")
        if flag in _INDEX_FLAGS:
            item.other_index = flag
        if flag in {"-p", "--package"}:
            packages.append(value if eq else (args[i + 1] if i + 1 < len(args) else ""))
        if flag in _NPX_VALUE_FLAGS and not eq:
            i += 1
        i += 1
    rest = args[i:]
    if not packages:
        if not rest:
            return False
        packages, rest = [rest[0]], rest[1:]
        command = None
    else:
        if not rest:
            return False
        command, rest = rest[0], rest[1:]
    if ":" in packages[0] or (packages[0].count("/") > (1 if packages[0].startswith("@") else 0)):
        return False  # github:, file:, URLs, paths: nothing for `mcpctl install` to pin
    name, version = split_npm_spec(packages[0])
    item.want = ("npm", name, version)
    item.extra_requires = packages[1:]
    item.command = command or _guess_bin(name)
    item.explicit_command = command is not None
    item.args = _translate_args(rest, tr)
    item.notes.append(_mask(f"was: npx {' '.join(args[:i])} {packages[0]}".replace("  ", " ")))
    return True


def _from_uvx(item: Imported, args: list[str], tr: _Translator) -> bool:
    source_spec: str | None = None
    extras: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag, eq, value = args[i].partition("=")
        takes_value = flag in {"--from", "--with", "--python", "-p", "--index", "--index-url",
                               "--extra-index-url", "--with-requirements"}
        val = value if eq else (args[i + 1] if i + 1 < len(args) else "")
        if flag in _INDEX_FLAGS:
            item.other_index = flag
        if flag == "--from":
            source_spec = val
        elif flag == "--with":
            extras.append(val)
        i += 2 if takes_value and not eq else 1
    if i >= len(args):
        return False
    command_spec, rest = args[i], args[i + 1 :]
    if re.search(r"[:/\\]", source_spec or command_spec):
        return False  # git+https://, paths: nothing for `mcpctl install` to pin
    name, version = split_pypi_spec(source_spec or command_spec)
    command = split_pypi_spec(command_spec)[0] if source_spec else re.sub(r"\[.*\]", "", name)
    item.want = ("pypi", name, version)
    item.extra_requires = extras
    item.command = command
    item.explicit_command = True  # uvx runs the command named like the package: no lookup needed
    item.args = _translate_args(rest, tr)
    item.notes.append(_mask(f"was: uvx {' '.join(args[: i + 1])}"))
    return True


def _guess_bin(package: str) -> str:
    """The bin name when no lookup is possible: the reference servers' convention, else the bare name."""
    scope, _, base = package.rpartition("/")
    if scope == "@modelcontextprotocol" and base.startswith("server-"):
        return f"mcp-{base}"
    return base


def split_npm_spec(spec: str) -> tuple[str, str | None]:
    """`@scope/pkg@1.2.3` → ("@scope/pkg", "1.2.3"); no version → None."""
    at = spec.rfind("@")
    if at > 0:
        return spec[:at], spec[at + 1 :] or None
    return spec, None


def split_pypi_spec(spec: str) -> tuple[str, str | None]:
    """`pkg==1.2`, `pkg@1.2`, `pkg[extra]>=1` → (name with extras, version or range or None)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)\s*(?:@|==)?\s*(.*)$", spec)
    if not match:
        return spec, None
    version = match.group(2).strip() or None
    return match.group(1), version


# --- pins ----------------------------------------------------------------------------------------


def resolve_pins(items: Sequence[Imported], *, offline: bool = False, jobs: int = 8) -> None:
    """Turn each npx/uvx entry's wish into `package` (+ bin name): an exact version given in the
    client config is used as is; otherwise (and for npm bin names) one registry lookup per package
    through npm / pip. Offline, or when a lookup fails, the pin is left as a comment to fill in."""
    wanted = [item for item in items if item.want]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(lambda item: _resolve_one(item, offline), wanted))


def _resolve_one(item: Imported, offline: bool) -> None:
    assert item.want is not None
    ecosystem, name, version = item.want
    exact = version if version and _EXACT_VERSION.fullmatch(version) and (
        ecosystem == "pypi" or _SEMVER_EXACT.fullmatch(version)) else None
    bins: list[str] = []
    if not offline and (exact is None or (ecosystem == "npm" and not item.explicit_command)):
        exact, bins = (_npm_lookup(name, exact or version) if ecosystem == "npm"
                       else (_pypi_lookup(name) if exact is None else exact, []))
    if ecosystem == "npm" and bins and not item.explicit_command:
        item.command = _pick_bin(name, bins)
        if len(bins) > 1:
            item.notes.append(f"package bins: {', '.join(bins)}")
    elif ecosystem == "npm" and not item.explicit_command:
        item.notes.append(f"command: guessed from the package name; check with 'npm view {name} bin'")
    if exact:
        item.package = f"npm:{name}@{exact}" if ecosystem == "npm" else f"pypi:{name}=={exact}"
    else:
        asked = f" (asked for '{version}')" if version else ""
        how = f"npm view {name} version" if ecosystem == "npm" else f"pip index versions {name}"
        item.notes.append(f"pin a version{asked}: package = \"{ecosystem}:{name}"
                          f"{'@' if ecosystem == 'npm' else '=='}VERSION\" (see '{how}')")


def _run_lookup(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _npm_lookup(name: str, wanted: str | None) -> tuple[str | None, list[str]]:
    out = _run_lookup(["npm", "view", f"{name}@{wanted or 'latest'}", "version", "bin", "--json"])
    if not out:
        return None, []
    try:
        data = json.loads(out)
    except ValueError:
        return None, []
    if isinstance(data, list):  # a range matched several versions: npm lists them oldest first
        data = data[-1] if data else {}
    if not isinstance(data, dict):
        return None, []
    bin_field = data.get("bin")
    bins = list(bin_field) if isinstance(bin_field, dict) else [name.rsplit("/", 1)[-1]] if bin_field else []
    version = data.get("version")
    return (version if isinstance(version, str) else None), bins


def _pypi_lookup(name: str) -> str | None:
    bare = re.sub(r"\[.*\]", "", name)
    out = _run_lookup([sys.executable, "-m", "pip", "index", "versions", bare])
    found = re.match(r"\S+ \(([^)]+)\)", out or "")
    return found.group(1) if found else None


def _pick_bin(package: str, bins: Sequence[str]) -> str:
    base = package.rsplit("/", 1)[-1]
    for candidate in (base, *[b for b in bins if "mcp" in b.lower()]):
        if candidate in bins:
            return candidate
    return bins[0]


# --- output --------------------------------------------------------------------------------------


def comment_text(text: str) -> str:
    """`text` fit for one `# ...` line: a newline (or any control character) from a client config
    would end the comment and start TOML, so control characters are shown escaped."""
    return "".join(ch if " " <= ch != "\x7f" else repr(ch)[1:-1] for ch in text)


def entry_values(item: Imported) -> dict[str, Any]:
    """The keys `item` sets in its `[servers.NAME]` table, in the order they are written."""
    values: dict[str, Any] = {}
    if item.package:
        values["package"] = item.package
    if item.extra_requires:
        values["extra_requires"] = list(item.extra_requires)
    values["command"] = item.command
    if item.args:
        values["args"] = list(item.args)
    if item.env:
        values["env"] = dict(item.env)
    if item.cwd:
        values["cwd"] = item.cwd
    if item.requires_env:
        values["requires_env"] = list(item.requires_env)
    return values


def _entry_table(item: Imported) -> Any:
    import tomlkit

    table = tomlkit.table()
    for note in item.notes:
        table.add(tomlkit.comment(comment_text(note)))
    for key, value in entry_values(item).items():
        if isinstance(value, dict):
            inline = tomlkit.inline_table()
            inline.update(value)
            table.add(key, inline)
        else:
            table.add(key, value)
    return table


def _servers_document(items: Sequence[Imported], head: Sequence[str] = ()) -> str:
    """`[servers.NAME]` tables for `items`, written by tomlkit (never by string formatting), with
    `head` as comment lines on top."""
    import tomlkit

    doc = tomlkit.document()
    for line in head:
        doc.add(tomlkit.comment(comment_text(line)))
    if head:
        doc.add(tomlkit.nl())
    servers = tomlkit.table(is_super_table=True)
    for item in items:
        servers.add(item.name, _entry_table(item))
    if items:
        doc.add("servers", servers)
    text = tomlkit.dumps(doc)
    return text if text.endswith("\n") else text + "\n"


def render_entry(item: Imported) -> str:
    return _servers_document([item])


def render_toml(items: Sequence[Imported], skipped: Sequence[Skipped], sources: Sequence[Source]) -> str:
    head = ["Imported by `mcpctl import` from:"]
    head.extend(f"  {s.path} ({s.label})" for s in sources)
    if skipped:
        head.append("Skipped:")
        head.extend(f"  {s.name} ({s.source}): {s.reason}" for s in skipped)
    return _servers_document(items, head)


def dedupe(items: Sequence[Imported]) -> list[Imported]:
    """One entry per name: identical duplicates (the same server in two clients) collapse; a
    different server under a taken name gets a numbered name."""
    out: dict[str, Imported] = {}
    for item in items:
        if item.name not in out:
            out[item.name] = item
            continue
        if render_entry(replace(item, notes=[])) == render_entry(replace(out[item.name], notes=[])):
            continue
        n = 2
        while f"{item.name}-{n}" in out:
            n += 1
        renamed = replace(item, name=f"{item.name}-{n}", notes=[*item.notes,
                                                                f"renamed: '{item.name}' is taken"])
        out[renamed.name] = renamed
    return list(out.values())


# --- --write -------------------------------------------------------------------------------------


class MergeRefused(Exception):
    """`--write` would overwrite existing servers (without --force) or produce an invalid file."""


def merge_text(existing: str, items: Sequence[Imported], *, force: bool) -> tuple[str, list[str]]:
    """`existing` fleet text with `items` appended; returns (text, replaced names). Clashing names
    are refused unless `force`, and then their `[servers.NAME]` tables are cut out first."""
    import tomllib

    try:
        current = tomllib.loads(existing).get("servers", {})
    except tomllib.TOMLDecodeError as exc:
        raise MergeRefused(f"the config file is not valid TOML: {exc}") from None
    clashes = [item.name for item in items if item.name in current]
    if clashes and not force:
        raise MergeRefused(f"servers already defined: {', '.join(clashes)} (use --force to replace them)")
    text = existing
    for name in clashes:
        text = _cut_server_table(text, name)
    block = _servers_document(items)
    if text and not text.endswith("\n"):
        text += "\n"
    merged = text + ("\n" if text else "") + block
    _verify_merge(merged, [n for n in current if n not in clashes], items)
    return merged, clashes


def _verify_merge(text: str, kept: Sequence[str], items: Sequence[Imported]) -> None:
    """The merged file holds exactly the kept servers plus the new ones, each new one with exactly
    the values it was given: nothing in a client config can have added a table or a key."""
    import tomllib

    try:
        servers = tomllib.loads(text).get("servers", {})
    except tomllib.TOMLDecodeError as exc:
        raise MergeRefused(f"the merged file would not be valid TOML: {exc}") from None
    expected = [*kept, *(item.name for item in items)]
    if sorted(servers) != sorted(expected):
        raise MergeRefused(f"the merged file would define servers {sorted(servers)}, not {sorted(expected)}")
    for item in items:
        if servers[item.name] != entry_values(item):
            raise MergeRefused(f"servers.{item.name} would not read back as written")


def _cut_server_table(text: str, name: str) -> str:
    """Remove `[servers.NAME]` and its sub-tables up to the next other header; comments just above
    that next header stay with it."""
    lines = text.splitlines(keepends=True)
    header = re.compile(r"\s*\[\s*servers\s*\.\s*(?:" + re.escape(name) + r'|"' + re.escape(name)
                        + r'")\s*(?:\.[^\]]*)?\]\s*(?:#.*)?$')
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        raise MergeRefused(f"servers.{name} is not written as a [servers.{name}] table; "
                           "replace it by hand")
    end = start + 1
    while end < len(lines) and not (re.match(r"\s*\[", lines[end]) and not header.match(lines[end])):
        end += 1
    while end > start + 1 and lines[end - 1].lstrip().startswith("#") and end < len(lines):
        end -= 1
    return "".join(lines[:start] + lines[end:])


def merge_into(path: Path, items: Sequence[Imported], *, force: bool) -> list[str]:
    """Write `items` into the fleet file at `path` (created if absent), validated and atomically,
    so a watching daemon never sees a half-written file. Returns the names it replaced."""
    from supervisor.config import parse_config
    from supervisor.errors import ConfigError

    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    text, replaced = merge_text(existing, items, force=force)
    try:
        parse_config(text, path=str(path))
    except ConfigError as exc:
        raise MergeRefused(f"the merged file would be invalid, nothing written: {exc}") from None
    tmp = path.with_name(f".{path.name}.import-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    tmp.replace(path)
    return replaced

"""The `package` grammar: `npm:NAME@VERSION` or `pypi:NAME==VERSION`, an exact pin, parsed once.

`fleet.toml` validation (a server's `package`) and `mcpctl install` (what to install, where, and
whether the marker still matches) read the same `PackageSpec`, so anything the config accepts is
something the installer can install, and the two cannot drift apart.

Versions are exact (no ranges, no tags like `latest`): `mcpctl install` is then reproducible and
comparing the installed marker with the configured pin means something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Ecosystem = Literal["npm", "pypi"]

# npm names: an optional @scope/, then the name (npm's own rules, case-insensitive here so the
# message can say "pin a version" rather than "bad name" for a capitalised typo).
_NPM = re.compile(r"npm:((?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)(?:@(.*))?", re.IGNORECASE)
# PyPI names with optional [extras]; `==` may have spaces around it, as pip allows.
_PYPI = re.compile(r"pypi:([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[A-Za-z0-9._,\s-]+\])?)(?:\s*==\s*(.*))?")
_PIN = re.compile(r"\d[0-9A-Za-z.+_-]*")


class PackageSpecError(ValueError):
    """Not an exact `npm:` / `pypi:` pin; the message says what one looks like."""


@dataclass(frozen=True)
class PackageSpec:
    """`npm:NAME@VERSION` or `pypi:NAME==VERSION`, parsed."""

    ecosystem: Ecosystem
    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> PackageSpec:
        """Parse a `package` value; PackageSpecError says what an exact pin looks like."""
        npm, pypi = _NPM.fullmatch(text), _PYPI.fullmatch(text)
        if npm:
            if not npm.group(2) or not _PIN.fullmatch(npm.group(2)):
                raise PackageSpecError(f'npm package "{npm.group(1)}" must pin an exact version, '
                                       f'like "npm:{npm.group(1)}@1.2.3"')
            return cls("npm", npm.group(1), npm.group(2))
        if pypi:
            if not pypi.group(2) or not _PIN.fullmatch(pypi.group(2)):
                raise PackageSpecError(f'pypi package "{pypi.group(1)}" must pin an exact version, '
                                       f'like "pypi:{pypi.group(1)}==1.2.3"')
            return cls("pypi", pypi.group(1), pypi.group(2))
        raise PackageSpecError('expected "npm:NAME@VERSION" or "pypi:NAME==VERSION"')

    @property
    def requirement(self) -> str:
        """What the ecosystem's installer takes on its command line."""
        sep = "@" if self.ecosystem == "npm" else "=="
        return f"{self.name}{sep}{self.version}"

    def __str__(self) -> str:
        return f"{self.ecosystem}:{self.requirement}"

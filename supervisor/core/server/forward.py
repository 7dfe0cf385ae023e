"""`Forward`: a read-only attribute of the `Server` facade that reads one of its parts.

The fleet, the doors and the metrics read a server's figures (`queue`, `calls_total`, ...) where
they always did; the figures live in the part that keeps them, which alone writes them. One line
per figure says where:

    calls_total = Forward["Server", int](lambda server: server.admission.calls_total)

Typed on both ends: mypy checks the lambda against the facade's class and the figure's type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Never, TypeVar, overload

Facade = TypeVar("Facade")
T = TypeVar("T")


class Forward(Generic[Facade, T]):
    __slots__ = ("_read",)

    def __init__(self, read: Callable[[Facade], T]) -> None:
        self._read = read

    @overload
    def __get__(self, obj: None, owner: type) -> Forward[Facade, T]: ...
    @overload
    def __get__(self, obj: Facade, owner: type) -> T: ...
    def __get__(self, obj: Facade | None, owner: type) -> T | Forward[Facade, T]:
        return self if obj is None else self._read(obj)

    def __set__(self, obj: object, value: Never) -> None:
        """Read-only, so that `server.calls_total += 1` fails loudly (mypy: nothing can be
        assigned; at run time: AttributeError) instead of hiding the part's figure."""
        raise AttributeError("a figure the facade forwards is written by its part, not here")

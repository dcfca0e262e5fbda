"""A secret value whose repr and str never show it."""

from __future__ import annotations


class Secret:
    """Holds an API key or token. Only `reveal()` gives the value, at the point of use.

    `repr`, `str` and f-strings show a mask, so a secret that ends up in a log line,
    an exception, a crash screen or a snapshot shows nothing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # pickling would write the value out: refuse
        raise TypeError("Secret cannot be pickled")

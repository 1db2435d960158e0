"""Validation helpers shared by every unit's configuration, and the error they raise.

Every check gives a one-line ConfigError naming the field, fit for a command line.
"""

import dataclasses
import operator


class ConfigError(ValueError):
    """An invalid configuration. The message is one line, fit for a command line."""


def _integer(name, value, error):
    """`value` as an int (not a bool), or `error` naming the field."""
    if isinstance(value, bool):
        raise error(f"{name} must be an integer, not {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise error(f"{name} must be an integer, not {value!r}") from None


def check_int(name, value, lo, hi):
    """`value` as an int in [lo, hi], or a one-line ConfigError naming the field."""
    value = _integer(name, value, ConfigError)
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def positive_int(name, value):
    """`value` as an int of at least 1, or a one-line ValueError naming it (for the parameters of
    components and functions, where a configuration's ConfigError is not the right kind)."""
    value = _integer(name, value, ValueError)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, not {value!r}")
    return value


def check_choice(name, value, choices):
    """`value` if it is one of `choices` (any iterable of names, e.g. a registry)."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def int_range(width, signed):
    """The (min, max) integers representable in `width` bits."""
    if signed:
        return -(1 << (width - 1)), (1 << (width - 1)) - 1
    return 0, (1 << width) - 1


def signed_width_for(lo, hi):
    """The smallest two's complement width that holds every integer in [lo, hi]."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


class FieldsConfig:
    """Round trip of a frozen configuration dataclass through a plain dict (the manifest's
    "config"), rejecting unknown fields with a one-line message."""

    kind = "configuration"

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields):
        if not isinstance(fields, dict):
            raise ConfigError(f"a {cls.kind} must be a mapping of fields, not {type(fields).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ConfigError(f"unknown {cls.kind} field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**fields)
        except TypeError as e:   # a field of the wrong kind that the checks let through
            raise ConfigError(f"invalid {cls.kind}: {e}") from None

    def _set(self, name, value):
        """Store a validated (normalised) value into this frozen dataclass."""
        object.__setattr__(self, name, value)

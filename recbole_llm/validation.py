"""Config validation: one rule per key, one message format, checked once before training.

The module that owns a key declares its rule in a dict (``{key: rule}``) next to the
code that uses the key; every other place that needs the key imports that dict, so
a key is checked by one rule with one message wherever it is used.  Models check
their keys in their constructor, i.e. once, before any data is trained on::

    FUSION_RULES = {"fusion": one_of(FUSIONS), "rrf_k": number(low=0)}
    validate(config, FUSION_RULES)

A failed rule raises :class:`ConfigError` (a ``ValueError``):
``<key> must be <what is allowed>, got <value>``.
"""
import math


class ConfigError(ValueError):
    """A config key holds a value its rule refuses."""

    def __init__(self, key, value, allowed, detail=""):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} must be {allowed}, got {value!r}" + (f" ({detail})" if detail else ""))


class Rule:
    """``allowed`` (for the message) and ``accepts(value) -> bool``."""

    def __init__(self, allowed, accepts, optional=False):
        self.allowed, self.accepts, self.optional = allowed, accepts, optional

    def check(self, key, value):
        if value is None and self.optional:
            return value
        if not self.accepts(value):
            raise ConfigError(key, value, self.allowed + (" or ~ (None)" if self.optional else ""))
        return value


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _bounds(low, high, low_open, high_open):
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if high is None:
        return f"> {low}" if low_open else f">= {low}"
    return f"in {left}{low}, {high}{right}"


def number(low=None, high=None, low_open=False, high_open=False, optional=False):
    """A finite number (not a bool) within the bounds."""
    def accepts(v):
        return (_is_number(v) and (low is None or (v > low if low_open else v >= low))
                and (high is None or (v < high if high_open else v <= high)))
    allowed = "a finite number" + ("" if low is None else " " + _bounds(low, high, low_open, high_open))
    return Rule(allowed, accepts, optional)


def integer(low=None, high=None, optional=False):
    """An int (not a bool) within ``[low, high]``."""
    def accepts(v):
        return (isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low)
                and (high is None or v <= high))
    allowed = "an integer" + ("" if low is None else " " + _bounds(low, high, False, False))
    return Rule(allowed, accepts, optional)


def one_of(choices, optional=False):
    choices = tuple(choices)
    return Rule(f"one of {choices}", lambda v: isinstance(v, str) and v in choices, optional)


def boolean():
    return Rule("True or False", lambda v: isinstance(v, bool))


# Keys that several methods read with one meaning, hence one rule.
SHARED_RULES = {
    "cl_weight": number(low=0, high=100),  # weight of a contrastive loss (λ_CL of LUMOS, CL4SRec's λ)
    "cl_temperature": number(low=0, high=100, low_open=True),  # InfoNCE temperature τ
}


def validate(config, rules):
    """Check every key of ``rules`` in ``config``; raise :class:`ConfigError` on the first bad one."""
    for key, rule in rules.items():
        rule.check(key, config[key])

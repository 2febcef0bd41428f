"""Turn pydantic validation errors into ringfleet's one-line form."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from ringfleet.errors import RingfleetError, dotted

# Friendly words for the regular expressions used in the models.
PATTERN_WORDS = {
    r"^[a-z][a-z0-9-]{0,30}$": "must be lowercase letters, digits and dashes, "
    "starting with a letter, at most 31 characters",
    r"^[a-z_][a-z0-9_-]{0,31}$": "must be a POSIX user name",
    r"^[0-9]+(\.[0-9]+)*$": "must be a dotted version such as 2.15.1",
    r"^/[^\s]*$": "must be an absolute path",
    r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B?|[kmgt]|b)?$": "must be a size such as 4GiB or 512m",
}


def _message(err: dict[str, Any], model: type[BaseModel] | None) -> tuple[str, bool]:
    """Return (message, show_got) for one pydantic error dict."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required", False
    if kind == "extra_forbidden":
        known = _known_keys(model, err["loc"]) if model else []
        hint = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        msg = "unknown key"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        elif known:
            msg += f"; expected one of {', '.join(known)}"
        return msg, False
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        key = {">=": "ge", ">": "gt", "<=": "le", "<": "lt"}[bounds[kind]]
        return f"must be {bounds[kind]} {ctx.get(key)}", True
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer", True
    if kind in ("string_type",):
        return "must be a string", True
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false", True
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a mapping", True
    if kind in ("list_type", "tuple_type"):
        return "must be a list", True
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}", True
    if kind == "string_pattern_mismatch":
        return PATTERN_WORDS.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}"), True
    if kind == "string_too_short":
        return "must not be empty", True
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)", True
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])), True
    return err["msg"][0].lower() + err["msg"][1:], True


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that holds the unknown key at `loc`."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _inner_model(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _inner_model(annotation: Any) -> Any:
    """Find a BaseModel inside list[...]/Optional[...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def to_ringfleet_error(
    exc: ValidationError, file: str, root: str, model: type[BaseModel] | None = None
) -> RingfleetError:
    """The first validation error, as `file: root.path: message (got x)`."""
    errors = exc.errors(include_url=False)
    # A misspelt key also makes the intended key "missing": name the typo, the root cause.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    msg, show_got = _message(err, model)
    where = f"{file}: {dotted(err['loc'], root)}"
    if show_got:
        return RingfleetError(where, msg, err.get("input"), show_got=True)
    return RingfleetError(where, msg)

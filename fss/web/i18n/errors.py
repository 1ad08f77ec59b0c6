"""What an API error says, as a code and parameters the console renders in its language.

Every 4xx body keeps its English ``error`` line for scripts and adds ``code`` and ``params``:
the console looks the code's text up in the page's catalog (``ERROR_TEXTS``, English source
text -> zh_CN.json) and fills the parameters. Errors without a code of their own get
``invalid_field`` ({field}: {reason}) or ``error`` ({text}): the console shows those with the
English reason (docs/web.md lists which stay English).
"""

from __future__ import annotations

import re
from typing import Any

# code -> English text; {name} filled from params. Every text has a zh-CN entry (tested).
ERROR_TEXTS: dict[str, str] = {
    "error": "{text}",
    "invalid_field": "{field}: {reason}",
    "required": "{field}: required",
    "not_empty": "{field}: must not be empty",
    "too_long": "{field}: at most {limit} characters",
    "too_short": "{field}: at least {limit} characters",
    "at_least": "{field}: must be at least {limit}",
    "above": "{field}: must be greater than {limit}",
    "at_most": "{field}: must be at most {limit}",
    "below": "{field}: must be less than {limit}",
    "range": "{field}: must be {low}..{high}, got {value}",
    "whole_number": "{field}: must be a whole number",
    "number": "{field}: must be a number",
    "boolean": "{field}: must be true or false",
    "text": "{field}: must be text",
    "object": "{field}: must be an object",
    "json_object": "{field}: must be a JSON object",
    "list": "{field}: must be a list",
    "one_of": "{field}: must be one of {choices}",
    "unknown_field": "{field}: not a field of this request",
    "invalid_json": "body: invalid JSON",
    "time": "{field}: must be a time like 2026-05-01T13:00Z",
    "future": "{field}: must be in the future",
    "time_zone": "{field}: unknown time zone {zone}",
    "cron_fields":
        "cron: '{expression}' has {count} fields; use 5 (minute first) or 6 (seconds first)",
    "cron_field": "cron: '{expression}': the {part} field is wrong ({reason})",
    # The reasons fss.domain.cron_fields gives, each its own code so none stays English;
    # `part` is the field's name (second, minute, hour, day-of-month, month, day-of-week),
    # which the console says in its language.
    "cron_value": "cron: '{expression}': the {part} field is wrong ({value} is not {span})",
    "cron_value_names":
        "cron: '{expression}': the {part} field is wrong ({value} is not {span} or {names})",
    "cron_step":
        "cron: '{expression}': the {part} field is wrong (step {value} is not a whole number "
        "from 1)",
    "cron_step_range":
        "cron: '{expression}': the {part} field is wrong (step {value} is larger than its "
        "range {span})",
    "cron_nth": "cron: '{expression}': the {part} field is wrong ({value} needs a week 1-5 "
                "after '#')",
    "cron_never": "cron: '{expression}' never fires",
    "id": "{field}: not an id (ids go from 1 to {limit})",
    "nothing_to_change": "nothing to change: give at least one field",
    "group_not_found": "task group {group_id} does not exist",
    "task_not_found": "task {task_id} does not exist",
    "not_found": "{what} does not exist",
    "group_busy": "task group {group_id} is already running task {task_id}",
    "group_changed":
        "task group {group_id} was changed by someone else meanwhile; reload it and edit again",
    "viewer": "user {user} is a viewer and cannot change anything",
    "csrf": "the page's security token is missing or old: reload the page",
    "cross_site": "cross-site request refused",
    "login_required": "not signed in: log in again",
    "throttled": "too many failed logins: try again in {seconds} s",
    "database": "the database {url} cannot be reached: {reason}",
    "internal": "internal error ({kind}); the fss web log has details",
    "http_404": "not found",
    "http_405": "method not allowed",
}

# pydantic's error types -> (code, the ctx key holding the limit)
_PYDANTIC: dict[str, tuple[str, str | None]] = {
    "missing": ("required", None),
    "string_too_long": ("too_long", "max_length"),
    "too_long": ("too_long", "max_length"),
    "string_too_short": ("too_short", "min_length"),
    "greater_than_equal": ("at_least", "ge"),
    "greater_than": ("above", "gt"),
    "less_than_equal": ("at_most", "le"),
    "less_than": ("below", "lt"),
    "int_parsing": ("whole_number", None),
    "int_type": ("whole_number", None),
    "int_from_float": ("whole_number", None),
    "float_parsing": ("number", None),
    "float_type": ("number", None),
    "finite_number": ("number", None),
    "bool_parsing": ("boolean", None),
    "bool_type": ("boolean", None),
    "string_type": ("text", None),
    "dict_type": ("object", None),
    "model_type": ("object", None),
    "model_attributes_type": ("object", None),
    "list_type": ("list", None),
    "extra_forbidden": ("unknown_field", None),
    "json_invalid": ("invalid_json", None),
}

# InvalidField reasons (fss.domain and fss.store) -> code; named groups become params.
_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), code) for p, code in [
        (r"^must not be empty$|^must be non-empty text$", "not_empty"),
        (r"^(?:at most|longer than) (?P<limit>\d+) characters$", "too_long"),
        (r"^(?:must be text of )?at most (?P<limit>\d+) characters$", "too_long"),
        (r"^'.*' is too long$", "too_long_plain"),
        (r"^must be (?P<low>-?\d+)\.\.(?P<high>-?\d+), got (?P<value>.+)$", "range"),
        (r"^must be >= (?P<limit>\d+), got .+$", "at_least"),
        (r"^must be > 0$|^must be longer than 0 s$", "positive"),
        (r"^must be a whole number(?:, got .+)?$|^must be an integer$", "whole_number"),
        (r"^must be a finite number(?:, got .+)?$", "number"),
        (r"^must be true or false(?:, got .+)?$", "boolean"),
        (r"^must be a string(?:, got .+)?$", "text"),
        (r"^must be an object$", "object"),
        (r"^must be a JSON object$", "json_object"),
        (r"^must be a list(?: of strings)?$", "list"),
        (r"^must be in the future$", "future"),
        (r"^.* is not an ISO 8601 time$|^must be an ISO 8601 time$", "time"),
        (r"^unknown time zone '(?P<zone>[^']*)'$", "time_zone"),
        (r"^'(?P<zone>[^']*)' is not a time zone name like Asia/Shanghai$", "time_zone"),
        (r"^'(?P<expression>[^']*)' has (?P<count>\d+) fields; .*$", "cron_fields"),
        (r"^'(?P<expression>[^']*)': (?P<part>[\w-]+) field: (?P<value>'[^']*') is not "
         r"(?P<span>\d+-\d+)$", "cron_value"),
        (r"^'(?P<expression>[^']*)': (?P<part>[\w-]+) field: (?P<value>'[^']*') is not "
         r"(?P<span>\d+-\d+) or (?P<names>\w+-\w+)$", "cron_value_names"),
        (r"^'(?P<expression>[^']*)': (?P<part>[\w-]+) field: step (?P<value>'[^']*') is not a "
         r"whole number from 1$", "cron_step"),
        (r"^'(?P<expression>[^']*)': (?P<part>[\w-]+) field: step (?P<value>\d+) is larger "
         r"than its range (?P<span>\d+-\d+)$", "cron_step_range"),
        (r"^'(?P<expression>[^']*)': (?P<part>[\w-]+) field: (?P<value>'[^']*') needs a week "
         r"1-5 after '#'$", "cron_nth"),
        (r"^'(?P<expression>[^']*)': (?P<part>[\w -]+) field: (?P<reason>.+)$", "cron_field"),
        (r"^'(?P<expression>[^']*)' never fires.*$", "cron_never"),
        (r"^.* is not an id: ids go from 1 to (?P<limit>\d+)$", "id"),
        (r"^'.*' is not one of (?P<choices>.+)$|^.* is not one of (?P<choices2>.+)$", "one_of"),
        (r"^nothing to change; give at least one field$", "nothing_to_change"),
    ]
]
# Codes a reason pattern may name that are not texts of their own.
_ALIASES = {"too_long_plain": ("error", None), "positive": ("above", "0")}


def describe_field(field: str, reason: str) -> tuple[str, dict[str, Any]]:
    """(code, params) of an InvalidField; invalid_field with the English reason when no
    pattern knows it."""
    for pattern, code in _REASONS:
        match = pattern.match(reason)
        if match is None:
            continue
        params: dict[str, Any] = {"field": field}
        for name, value in match.groupdict().items():
            if value is not None:
                params[name.rstrip("0123456789")] = value
        if code in _ALIASES:
            alias, limit = _ALIASES[code]
            if alias == "error":
                return "invalid_field", {"field": field, "reason": reason}
            params["limit"] = limit
            code = alias
        return code, params
    return "invalid_field", {"field": field, "reason": reason}


def describe_validation(field: str, kind: str, ctx: dict[str, Any], message: str,
                        ) -> tuple[str, dict[str, Any]]:
    """(code, params) of pydantic's first error."""
    if kind == "value_error":  # a validator raised: its reason may be one of ours
        reason = message.removeprefix("Value error, ")
        return describe_field(field, reason)
    if kind in ("literal_error", "enum"):
        return "one_of", {"field": field, "choices": str(ctx.get("expected", ""))}
    known = _PYDANTIC.get(kind)
    if known is None:
        return "invalid_field", {"field": field, "reason": message}
    code, limit_key = known
    params: dict[str, Any] = {"field": field}
    if limit_key is not None:
        params["limit"] = ctx.get(limit_key, "")
    return code, params

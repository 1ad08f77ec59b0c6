"""Generated hostile input never ends in a traceback: `--data` JSON (deep nesting, lone
surrogates, huge numbers, NaN/Infinity) and every FSS_* setting's value. Each is accepted or
refused with one line naming the field or setting."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_python import runtime_python

from fss.cli import main
from fss.config import ENV_PREFIX, Settings
from fss.errors import InvalidField

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'fss.db'}"
    assert run("db", "upgrade", "--database-url", url)[0] == 0
    return url


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def add_with_data(database: str, data: str) -> tuple[int, str, str]:
    return run("group", "add", "--caption", "c", "--job-name", "j", "--interval-ms", "1000",
               "--disabled", "--data", data, "--database-url", database)


def assert_added_or_refused(outcome: tuple[int, str, str]) -> None:
    code, out, err = outcome
    assert "Traceback" not in err
    if code == 0:
        assert out.strip().isdigit(), out
        return
    assert code == 2, outcome
    assert len(err.splitlines()) == 1 and err.startswith("error: data: "), err


def nested(depth: int, inner: str = "1") -> str:
    return '{"a":' + "[" * depth + inner + "]" * depth + "}"


SURROGATE_ESCAPES = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
NUMBERS = st.one_of(
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.integers(-400, 400).map(lambda e: f"1e{e}"),
    st.integers(300, 100_000).map(lambda e: f"-1.5E+{e}"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "0.0e0"]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    text=st.one_of(
        st.integers(1, 50_000).map(nested),
        st.builds(lambda s: '{"a":"' + s + '"}', SURROGATE_ESCAPES),
        st.builds(lambda n: '{"a":' + n + "}", NUMBERS),
        st.builds(lambda d, n: nested(d, n), st.integers(1, 200), NUMBERS),
        st.text().map(lambda s: json.dumps({"s": s}, ensure_ascii=False)),
        st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4).map(json.dumps),
        st.text(max_size=50),
    )
)
def test_given_hostile_data_json_then_the_group_is_added_or_one_line_names_data(
    database: str, text: str
) -> None:
    assert_added_or_refused(add_with_data(database, text))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (nested(100_000), "nested deeper than 100 levels"),
        ('{"a":"\\ud800"}', "contains a lone surrogate \\ud800, which is not valid UTF-8"),
        ('{"a":' + "9" * 5000 + "}", "invalid JSON (Exceeds the limit (4300 digits)"),
        ('{"a":NaN}', "NaN is not a JSON number"),
        ('{"a":1e999}', "number 1e999 is out of range"),
    ],
    ids=["deep", "surrogate", "huge-int", "nan", "huge-float"],
)
def test_given_hostile_data_then_the_real_fss_says_what_is_wrong_in_one_line(
    tmp_path: Path, database: str, text: str, reason: str
) -> None:
    data_file = tmp_path / "data.json"
    data_file.write_text(text)
    result = subprocess.run(
        [*FSS, "group", "add", "--caption", "c", "--job-name", "j", "--interval-ms", "1000",
         "--data", f"@{data_file}", "--database-url", database],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: data: {str(data_file)!r}: {reason}"), result.stderr


# -- settings -----------------------------------------------------------------------------------

NUMERIC = [f for f in fields(Settings) if f.type in ("int", "float")]
TEXT_SETTINGS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-1", "-0.5", "0x10", "1_000", " 7 ",
                     "1.5", "1e3", "", "true"]),
)


@pytest.mark.parametrize("field", NUMERIC, ids=lambda f: f.name)
@settings(max_examples=60, deadline=None)
@given(raw=TEXT_SETTINGS)
def test_every_numeric_setting_is_a_finite_number_or_one_error_naming_it(
    field: object, raw: str
) -> None:
    name = field.name  # type: ignore[attr-defined]
    variable = ENV_PREFIX + name.upper()
    try:
        value = getattr(Settings.from_env({variable: raw}), name)
    except InvalidField as exc:
        assert exc.field in (variable, name), exc
        assert "\n" not in str(exc)
        return
    assert value == value and value not in (float("inf"), float("-inf"))  # finite
    assert value >= 0


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        # Found by the property above: a lookahead below the default lead blamed the lead.
        ({"FSS_LOOKAHEAD_S": "0"}, "lookahead_s"),
        ({"FSS_LOOKAHEAD_S": "0.015"}, "lookahead_s"),
        ({"FSS_DISPATCH_LEAD_MS": "2000"}, "dispatch_lead_ms"),
        ({"FSS_DISPATCH_LEAD_MS": "50", "FSS_LOOKAHEAD_S": "0.05"}, "dispatch_lead_ms"),
        # The same for the lookahead and the lease: the property allowed 'lookahead_s' for
        # every setting, which hid FSS_LEASE_S=1 blaming the lookahead.
        ({"FSS_LEASE_S": "1"}, "lease_s"),
        ({"FSS_LOOKAHEAD_S": "30"}, "lookahead_s"),
        ({"FSS_LOOKAHEAD_S": "5", "FSS_LEASE_S": "4"}, "lookahead_s"),
    ],
)
def test_given_a_setting_not_shorter_than_its_bound_then_the_error_names_the_setting_changed(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidField) as raised:
        Settings.from_env(environ)
    assert raised.value.field == named
    message = str(raised.value)
    assert sum(n in message for n in ("dispatch_lead_ms", "lookahead_s", "lease_s")) == 2, message
    assert "\n" not in message


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.text(max_size=12), st.sampled_from(["1", "0", "TRUE", "off", " yes "])))
def test_fss_debug_is_a_flag_or_one_error_naming_it(raw: str) -> None:
    from fss.config import FLAG_VALUES, read_flag

    try:
        value = read_flag("FSS_DEBUG", {"FSS_DEBUG": raw})
    except InvalidField as exc:
        assert exc.field == "FSS_DEBUG"
        assert raw.strip().lower() not in FLAG_VALUES
        return
    assert value is FLAG_VALUES[raw.strip().lower()]


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.one_of(st.from_regex(r"[a-z][a-z0-9+]{0,10}", fullmatch=True),
                     st.sampled_from(["redis", "rediss", "unix", "memory", "none", "sentinel"])),
    setting=st.sampled_from(["broker_url", "fence_url"]),
)
def test_broker_and_fence_urls_take_only_the_schemes_fss_supports(
    scheme: str, setting: str
) -> None:
    from fss.config import BROKER_TRANSPORTS, FENCE_SCHEMES

    url = "none" if scheme == "none" else f"{scheme}://127.0.0.1:6379/0"
    allowed = (BROKER_TRANSPORTS if setting == "broker_url" else (*FENCE_SCHEMES, "none"))
    try:
        Settings.from_env({ENV_PREFIX + setting.upper(): url})
    except InvalidField as exc:
        assert exc.field == setting
        assert scheme.split("+")[0] not in allowed or scheme == "none"
        return
    assert scheme.split("+")[0] in allowed

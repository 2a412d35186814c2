"""cutover.config.environment: which CUTOVER_* variables name a setting."""

from __future__ import annotations

import pytest

from cutover.config.environment import NOT_SETTINGS, environment_problems, unknown_setting


@pytest.mark.parametrize(
    "name",
    [
        "CUTOVER_SPLIT__WEIGHT",
        "cutover_split__weight",  # matched without regard to case
        "CUTOVER_ADMIN_TOKEN",
        "CUTOVER_BACKENDS__NEW__METRICS_URL",
        "CUTOVER_BACKENDS__V3__URL",  # any backend's name: the entries of a mapping
        "CUTOVER_BACKENDS__NEW",  # one backend, as JSON
        "CUTOVER_DEFAULT_BACKEND",
        "CUTOVER_MIGRATIONS",
        "CUTOVER_GUARD__PROMETHEUS__QUERIES__NEW_P95",
        "CUTOVER_DEPRECATION__SUNSET_AT",  # a section that may be None
        "CUTOVER_ROUTES",
    ],
)
def test_variables_that_name_a_setting(name: str) -> None:
    assert unknown_setting(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "CUTOVER_SPLT__WEIGHT",
            "names no setting (the config has no 'splt'); did you mean CUTOVER_SPLIT?",
        ),
        ("CUTOVER_ADMIN__TOKEN", "names no setting (admin has no 'token')"),
        (
            "CUTOVER_ROUTES__0__PREFIX",
            "names no setting (routes is a list: set CUTOVER_ROUTES to all of it, as JSON)",
        ),
        # Misspelt on purpose, in lower case (matched without regard to case): the scan of the
        # project's CUTOVER_ names (tests/cli) knows the upper-case examples only.
        (
            "cutover_backends__new__urll",
            "names no setting (backends.new has no 'urll'); "
            "did you mean CUTOVER_BACKENDS__NEW__URL?",
        ),
        (
            "cutover_backends__new__url__x",
            "names no setting (backends.new.url is a value, not a section)",
        ),
        (
            "cutover_migrations__0__weight",
            "names no setting (migrations is a list: set CUTOVER_MIGRATIONS to all of it, as JSON)",
        ),
        (
            "CUTOVER_SPLIT__WEIGHT__X",
            "names no setting (split.weight is a value, not a section)",
        ),
    ],
)
def test_variables_that_name_no_setting(name: str, reason: str) -> None:
    assert unknown_setting(name) == reason


def test_environment_problems_skip_other_variables_and_the_non_settings() -> None:
    environ = {
        "PATH": "/bin",
        "CUTOVER_SPLIT__WEIGHT": "5",
        "CUTOVER_SPLIT__WEIGT": "1",
        **dict.fromkeys(NOT_SETTINGS, "x"),
    }
    assert environment_problems(environ) == [
        "CUTOVER_SPLIT__WEIGT: names no setting (split has no 'weigt'); "
        "did you mean CUTOVER_SPLIT__WEIGHT?"
    ]

"""Every chore of the project, one session each: ``nox -l`` lists them."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
# The tests run on every Python the classifiers promise, and a missing one fails the run
# rather than passing it untested: `nox -p 3.11` runs the sessions of one Python alone. nox is
# not to download one (.ci/run finds those the machine has).
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"

PYPROJECT = nox.project.load_toml("pyproject.toml")
# The Pythons the classifiers promise, oldest first.
PYTHONS = nox.project.python_versions(PYPROJECT)
# Each Python runs the tests with orjson; the oldest also on the standard library's json,
# which the package falls back to without orjson. The fallback is the same pure-Python code on
# every version, so once is enough, and it keeps a run of every Python within a few minutes
# each.
TEST_RUNS = [(python, "orjson") for python in PYTHONS] + [(PYTHONS[0], "json")]
SOURCES = ["flex_participants", "tests", "docs", "bench", "noxfile.py"]
# Everything the tests import, but orjson: every extra except speedups.
EXTRAS = "cli,redis,otel"


def _install(session: nox.Session, *groups: str, extras: str = EXTRAS) -> None:
    """Install the package (editable, with ``extras``) and the dependency ``groups``."""
    session.install("-e", f".[{extras}]", *nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session
@nox.parametrize(("python", "json"), TEST_RUNS)
def tests(session: nox.Session, json: str) -> None:
    """Run the test suite (pass pytest arguments after ``--``).

    Each Python runs it with orjson (the speedups extra); the oldest also on the standard
    library's json, which the package falls back to without it.
    """
    _install(session, "test", extras=f"{EXTRAS},speedups" if json == "orjson" else EXTRAS)
    session.run(
        "python",
        "-c",
        f"import flex_participants._convert as c; assert c.JSON_LIBRARY == {json!r}, c.JSON_LIBRARY",
    )
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package, the tests, the docs samples and the benchmark with ``mypy --strict``."""
    _install(session, "typecheck", extras=f"{EXTRAS},speedups")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs; every warning and broken reference fails the build."""
    # RedisLimiter and the OpenTelemetry adapter are documented too: their modules import
    # redis and opentelemetry.
    _install(session, "docs")
    session.run(
        "sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark against twilio and a hand-written loop; rewrite docs/performance.md.

    ``nox -s bench -- --quick`` is a tiny smoke run that checks only that nothing is lost;
    ``-- --scenario grid`` runs one scenario (``--grid-rate`` and ``--grid-latency`` a part
    of the grid). The crowd scenario's fleets need redis-server on ``PATH``.
    """
    _install(session, "bench", extras="speedups,redis")
    session.run("python", "-m", "bench", *session.posargs)

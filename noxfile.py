"""Every chore of the project, one session each: ``nox -l`` lists them."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "tests_stdlib_json", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

SOURCES = ["flex_participants", "tests", "docs", "bench", "noxfile.py"]
# Everything the tests import: every extra but the docs.
TEST_INSTALL = ".[test,cli,speedups,redis,otel]"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after ``--``)."""
    session.install("-e", TEST_INSTALL)
    session.run("pytest", *session.posargs)


@nox.session
def tests_stdlib_json(session: nox.Session) -> None:
    """Run the parsing and client tests without orjson, on the standard library's json."""
    session.install("-e", ".[test]")
    session.run(
        "python", "-c", "import flex_participants._convert as c; assert c.JSON_LIBRARY == 'json'"
    )
    session.run(
        "pytest",
        "tests/test_convert.py",
        "tests/test_client.py",
        "tests/test_stream.py",
        "tests/test_resilience.py",
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.14")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package and the tests with ``mypy --strict``."""
    session.install("-e", TEST_INSTALL, "mypy>=1.18")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs; every warning and broken reference fails the build."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark against twilio and a hand-written loop; rewrite docs/performance.md.

    ``nox -s bench -- --quick`` is a tiny smoke run that checks only that nothing is lost;
    ``-- --scenario budget`` runs one scenario. The budget scenario's fleet needs
    redis-server on ``PATH``.
    """
    session.install("-e", ".[speedups,redis]", "twilio>=9,<10", "matplotlib")
    session.run("python", "-m", "bench", *session.posargs)

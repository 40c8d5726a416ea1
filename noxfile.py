"""Every chore of the project, one session each: ``nox -l`` lists them."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

SOURCES = ["flex_participants", "tests", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after ``--``)."""
    session.install("-e", ".[test,cli,speedups]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.14")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package and the tests with ``mypy --strict``."""
    session.install("-e", ".[test,cli,speedups]", "mypy>=1.18")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs; every warning and broken reference fails the build."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )

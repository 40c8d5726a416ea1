"""Sphinx configuration: furo, MyST Markdown, and an API reference made from the docstrings.

Build with ``nox -s docs``, which runs ``sphinx-build -W -n --keep-going``: every warning and
every broken reference fails the build.
"""

from __future__ import annotations

from pathlib import Path

import flex_participants

HERE = Path(__file__).parent

project = "flex-participants"
author = "flex-participants contributors"
copyright = "2026, flex-participants contributors"
release = flex_participants.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "_inventories", "Thumbs.db", ".DS_Store"]

# The docstrings write `Name` for a cross-reference, as attrs and cattrs do.
default_role = "py:obj"
nitpicky = True

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference ------------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# `Fault` lists its kinds under a heading of their own.
napoleon_custom_sections = ["Kinds"]

# -- Cross-references to other projects ---------------------------------------------------

# Each project's own inventory first; the copy in _inventories/ when it cannot be reached
# (a build without network access), so that such a build resolves the same references.


def _inventory(url: str, name: str) -> tuple[str, tuple[str | None, str]]:
    return url, (None, str(HERE / "_inventories" / f"{name}.inv"))


intersphinx_mapping = {
    "python": _inventory("https://docs.python.org/3", "python"),
    "aiohttp": _inventory("https://docs.aiohttp.org/en/stable", "aiohttp"),
    "attrs": _inventory("https://www.attrs.org/en/stable", "attrs"),
    "cattrs": _inventory("https://catt.rs/en/stable", "cattrs"),
}
intersphinx_timeout = 10

# No copy of redis-py's inventory is kept in _inventories/, and `RedisLimiter`'s
# annotation names its client by the module's local alias.
nitpick_ignore = [
    ("py:class", "_redis_asyncio.Redis"),
    ("py:class", "redis.asyncio.Redis"),
    ("py:class", "redis.asyncio.client.Redis"),
    # Nor of OpenTelemetry's, for the adapter's one argument.
    ("py:class", "TracerProvider"),
    ("py:class", "opentelemetry.trace.TracerProvider"),
]

# -- HTML ---------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"flex-participants {release}"
html_static_path: list[str] = []

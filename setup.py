"""Packaging beyond what pyproject.toml can say: ship the top-level templates/ inside the wheel.

Operators edit templates/email/ at the top of the repository; a wheel carries the same files as
digest/templates/email/, so a non-editable install renders mail from any folder.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages("src", include=["digest*"]), "digest.templates.email"],
    package_dir={"": "src", "digest.templates": "templates"},
    package_data={
        "digest.templates.email": ["*.txt", "*.html"],
        "digest": ["py.typed"],
        "digest.store.migrations": ["script.py.mako"],
        "digest.web": ["templates/*.html", "static/*"],
    },
)

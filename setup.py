"""Packaging beyond what pyproject.toml can say: ship the top-level templates/ inside the wheel, and the
translations compiled.

Operators edit templates/email/ at the top of the repository; a wheel carries the same files as
digest/templates/email/, so a non-editable install renders mail from any folder. The gettext catalogs are kept
as .po (the .mo are built, never committed): building the wheel compiles them into it.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py


class build_py_with_catalogs(build_py):  # noqa: N801 (setuptools' command naming)
    """build_py, then each locales/<lang>/LC_MESSAGES/messages.po compiled to its .mo beside the copy."""

    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in Path("src/digest/locales").glob("*/LC_MESSAGES/messages.po"):
            target = Path(self.build_lib) / po.relative_to("src").with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source:
                catalog = read_po(source, locale=po.parts[-3])
            with target.open("wb") as out:
                write_mo(out, catalog)


setup(
    cmdclass={"build_py": build_py_with_catalogs},
    packages=[*find_namespace_packages("src", include=["digest*"], exclude=["digest.locales*"]), "digest.templates.email"],
    package_dir={"": "src", "digest.templates": "templates"},
    package_data={
        "digest.templates.email": ["*.txt", "*.html"],
        "digest": ["py.typed", "locales/*/LC_MESSAGES/*.po", "locales/*/LC_MESSAGES/*.mo"],
        "digest.store.migrations": ["script.py.mako"],
        "digest.web": ["templates/*.html", "static/*"],
    },
)

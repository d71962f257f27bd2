"""Build the optional C accelerator of the ingest (everything else is in pyproject.toml).

``csvault.crypto._rowframe`` (csvault/crypto/_rowframe.c) needs a C compiler and
OpenSSL's headers (Debian: ``gcc``, ``libssl-dev``). If it cannot be built the
install still succeeds and the ingest uses the pure-Python path (same bytes,
slower); ``make bench`` says which one ran.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler / headers: fall back to Python
            print(f"csvault: C accelerator not built ({exc}); using the Python path")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"csvault: C accelerator not built ({exc}); using the Python path")


setup(
    ext_modules=[
        Extension(
            "csvault.crypto._rowframe",
            ["csvault/crypto/_rowframe.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)

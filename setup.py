"""Build the optional C fast path of the ingest (everything else is in pyproject.toml).

``csvault.csvio._csvblocks`` (csvault/csvio/_csvblocks.c, and the column profile of
csvault/csvio/_profile.c) needs a C compiler (Debian: ``gcc``) and Python's headers.
If it cannot be built the install still
succeeds and the ingest reads every file with the reference Python reader (same
rows, slower); ``make bench`` says which one ran. ``CSVAULT_REQUIRE_NATIVE=1`` makes a
failed build fail the install (CI sets it). A module left by an earlier build is
removed first, so a failed rebuild never leaves a stale one behind.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRED = os.environ.get("CSVAULT_REQUIRE_NATIVE") == "1"


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler / headers: fall back to Python
            if REQUIRED:
                raise
            print(f"csvault: C fast path not built ({exc}); using the reference reader")

    def build_extension(self, ext: Extension) -> None:
        for path in {
            self.get_ext_fullpath(ext.name),
            os.path.join(
                os.path.dirname(__file__),
                *ext.name.split(".")[:-1],
                os.path.basename(self.get_ext_fullpath(ext.name)),
            ),
        }:
            if os.path.exists(path):
                os.remove(path)
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRED:
                raise
            print(f"csvault: C fast path not built ({exc}); using the reference reader")


setup(
    ext_modules=[
        Extension(
            "csvault.csvio._csvblocks",
            ["csvault/csvio/_csvblocks.c", "csvault/csvio/_profile.c"],
            depends=["csvault/csvio/_utf8.h"],
            extra_compile_args=["-O2"],
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)

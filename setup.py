"""Build hook: ship the product's default files inside the package.

The checkout keeps them where integrators look for them (``config/``, ``models/<pack>/``);
a wheel has no checkout, so ``build_py`` copies them into ``appliance/defaults/`` with the
same relative paths, where ``appliance.paths.resource`` finds them. Model *files* are never
copied: only manifests and licence texts (files are installed and verified at set-up).
Everything else is declared in setup.cfg.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DEFAULT_FILES = ("config/*.toml", "config/*.json", "config/mosquitto/*.template", "config/notices/*.txt",
                 "config/compliance/*.toml",
                 "models/*/manifest.toml", "models/*/LICENSE*", "models/*/README*")


class BuildWithDefaults(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "appliance" / "defaults"
        for pattern in DEFAULT_FILES:
            for source in sorted(HERE.glob(pattern)):
                destination = target / source.relative_to(HERE)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)


setup(cmdclass={"build_py": BuildWithDefaults})

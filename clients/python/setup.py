"""Build hook: generates Ferry's gRPC stubs from the repository's proto/ into the package.

Everything else lives in pyproject.toml. The stubs go into the built package (or into
src/ for an editable install) as ``ferry_client._pb``; see ``ferry_client._generate``.
The proto directory is ``$FERRY_PROTO_DIR`` or the nearest ``proto/`` above this file
(``../../proto`` in the Ferry repository).
"""

import importlib.util
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


def _generator():
    # Loaded by path: the package is not importable while it is being built.
    path = HERE / "src" / "ferry_client" / "_generate.py"
    spec = importlib.util.spec_from_file_location("_ferry_client_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    """build_py, then the stubs next to the package's modules."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            package_dir = HERE / "src" / "ferry_client"
        else:
            package_dir = pathlib.Path(self.build_lib) / "ferry_client"
        gen = _generator()
        gen.generate(gen.find_proto_dir(HERE), package_dir)


setup(cmdclass={"build_py": BuildPyWithStubs})

"""Python client of Ferry's gRPC API.

::

    from ferry_client import FerryClient, pb

    with FerryClient("http://127.0.0.1:7070") as ferry:
        tasks = ferry.migration.ListMigrationTasks(pb.migration.ListMigrationTasksRequest())

The messages and stubs (``pb``) are generated from Ferry's ``proto/`` when the package is
built; see ``ferry_client._generate``.
"""

__all__ = ["FerryClient", "pb"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so `python -m ferry_client._generate` runs before the stubs exist
    # (import_module, not `from . import`, which would come back here if the import fails).
    import importlib

    if name == "pb":
        return importlib.import_module(".pb", __name__)
    if name == "FerryClient":
        return importlib.import_module(".client", __name__).FerryClient
    raise AttributeError(f"module 'ferry_client' has no attribute {name!r}")

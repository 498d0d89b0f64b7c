"""Ferry's generated messages and stubs under short names.

``from ferry_client import pb`` then ``pb.migration.CreateMigrationTaskRequest``,
``pb.common.ClusterEndpoint``, ``pb.migration_grpc.MigrationTaskServiceStub`` and so on.
The modules are generated from Ferry's ``proto/`` when the package is built (see
``ferry_client._generate``).
"""

try:
    from ._pb.ferry.common.v1 import common_pb2 as common
    from ._pb.ferry.health_check.v1 import health_check_pb2 as health_check
    from ._pb.ferry.health_check.v1 import health_check_pb2_grpc as health_check_grpc
    from ._pb.ferry.metadata_sync.v1 import import_task_pb2 as import_task
    from ._pb.ferry.metadata_sync.v1 import import_task_pb2_grpc as import_task_grpc
    from ._pb.ferry.metadata_sync.v1 import migration_task_pb2 as migration
    from ._pb.ferry.metadata_sync.v1 import migration_task_pb2_grpc as migration_grpc
    from ._pb.ferry.router.v1 import router_pb2 as router
    from ._pb.ferry.router.v1 import router_pb2_grpc as router_grpc
    from ._pb.ferry.scanner.v1 import scanner_pb2 as scanner
    from ._pb.ferry.scanner.v1 import scanner_pb2_grpc as scanner_grpc
except ModuleNotFoundError as err:  # pragma: no cover - depends on how it was installed
    if not (err.name or "").startswith("ferry_client._pb"):
        raise
    raise ModuleNotFoundError(
        "ferry_client's gRPC stubs are not generated: install the package with pip "
        "(pip install ./clients/python generates them from proto/), or run "
        "`python -m ferry_client._generate` in a source checkout",
        name=err.name,
    ) from err

__all__ = [
    "common",
    "health_check",
    "health_check_grpc",
    "import_task",
    "import_task_grpc",
    "migration",
    "migration_grpc",
    "router",
    "router_grpc",
    "scanner",
    "scanner_grpc",
]

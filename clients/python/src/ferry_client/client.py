"""A thin wrapper around one gRPC channel to Ferry and the generated service stubs."""

from __future__ import annotations

import collections
import os
import pathlib

import grpc

from . import pb

ENV_TOKEN = "FERRY_TOKEN"
ENV_TOKEN_FILE = "FERRY_TOKEN_FILE"
ENV_TLS_CA_FILE = "FERRY_TLS_CA_FILE"
ENV_TLS_CLIENT_CERT_FILE = "FERRY_TLS_CLIENT_CERT_FILE"
ENV_TLS_CLIENT_KEY_FILE = "FERRY_TLS_CLIENT_KEY_FILE"
DEFAULT_ADDRESS = "http://127.0.0.1:7070"


class FerryClient:
    """One channel to a Ferry endpoint (``ferry standalone`` or a service) and its stubs.

    ``address`` is ``http://host:port`` (plaintext), ``https://host:port`` (TLS) or a bare
    ``host:port`` (plaintext), as the ``ferry`` CLI's ``--addr``.

    Like the CLI, every call carries ``authorization: Bearer <token>`` when a token is
    given, or when ``FERRY_TOKEN`` or the file named by ``FERRY_TOKEN_FILE`` holds one
    (servers started with ``FERRY_AUTH_TOKEN`` need it for calls that change state). TLS
    trusts ``tls_ca_file`` (or ``FERRY_TLS_CA_FILE``), else the system's roots; a client
    certificate (mTLS) comes from ``tls_client_cert_file`` / ``tls_client_key_file`` (or
    ``FERRY_TLS_CLIENT_CERT_FILE`` / ``FERRY_TLS_CLIENT_KEY_FILE``).

    Stubs (methods as in ``proto/``; pass ``timeout=`` per call)::

        client.migration      ferry.metadata_sync.v1.MigrationTaskService
        client.import_tasks   ferry.metadata_sync.v1.ImportTaskService
        client.scanner        ferry.scanner.v1.ScannerService
        client.health_check   ferry.health_check.v1.HealthCheckService
        client.router         ferry.router.v1.RouterService

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        tls_ca_file: str | os.PathLike | None = None,
        tls_client_cert_file: str | os.PathLike | None = None,
        tls_client_key_file: str | os.PathLike | None = None,
        options: list[tuple[str, object]] | None = None,
    ):
        target, tls = _parse_address(address)
        self.address = address
        self.target = target
        if not tls and tls_ca_file is not None:
            raise ValueError(f"a TLS CA file needs an https:// address, got {address!r}")
        if tls:
            credentials = _tls_credentials(
                tls_ca_file or os.environ.get(ENV_TLS_CA_FILE) or None,
                tls_client_cert_file or os.environ.get(ENV_TLS_CLIENT_CERT_FILE) or None,
                tls_client_key_file or os.environ.get(ENV_TLS_CLIENT_KEY_FILE) or None,
            )
            self._raw = grpc.secure_channel(target, credentials, options=options)
        else:
            self._raw = grpc.insecure_channel(target, options=options)
        token = token if token is not None else _token_from_env()
        self.channel: grpc.Channel = (
            grpc.intercept_channel(self._raw, _BearerToken(token)) if token else self._raw
        )
        self.authenticated = bool(token)
        self.migration = pb.migration_grpc.MigrationTaskServiceStub(self.channel)
        self.import_tasks = pb.import_task_grpc.ImportTaskServiceStub(self.channel)
        self.scanner = pb.scanner_grpc.ScannerServiceStub(self.channel)
        self.health_check = pb.health_check_grpc.HealthCheckServiceStub(self.channel)
        self.router = pb.router_grpc.RouterServiceStub(self.channel)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until the channel is connected; raises ``TimeoutError`` naming the address."""
        try:
            grpc.channel_ready_future(self._raw).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise TimeoutError(
                f"cannot reach Ferry at {self.address} within {timeout:g}s"
            ) from None

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> FerryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse_address(address: str) -> tuple[str, bool]:
    """(gRPC target, TLS?) of an ``--addr``-style address."""
    for scheme, tls in (("https://", True), ("http://", False)):
        if address.startswith(scheme):
            target = address[len(scheme) :].rstrip("/")
            break
    else:
        if "://" in address:
            raise ValueError(f"address must be http://, https:// or host:port, got {address!r}")
        target, tls = address, False
    if not target:
        raise ValueError(f"address has no host: {address!r}")
    return target, tls


def _read(path: str | os.PathLike, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror}") from None


def _tls_credentials(ca_file, cert_file, key_file) -> grpc.ChannelCredentials:
    if (cert_file is None) != (key_file is None):
        raise ValueError(
            f"set both {ENV_TLS_CLIENT_CERT_FILE} and {ENV_TLS_CLIENT_KEY_FILE} "
            "(or both arguments), or neither"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "TLS CA file") if ca_file else None,
        private_key=_read(key_file, "TLS client key file") if key_file else None,
        certificate_chain=_read(cert_file, "TLS client certificate file") if cert_file else None,
    )


def _token_from_env() -> str | None:
    """The token of ``FERRY_TOKEN`` or ``FERRY_TOKEN_FILE`` (not both), trimmed; the error
    says where it came from, never what it is."""
    raw, path = os.environ.get(ENV_TOKEN), os.environ.get(ENV_TOKEN_FILE)
    if raw is not None and path:
        raise ValueError(f"set {ENV_TOKEN} or {ENV_TOKEN_FILE}, not both")
    if path:
        origin = f"the token file {path}"
        try:
            raw = _read(path, "token file").decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{origin} is not text") from None
    elif raw is not None:
        origin = ENV_TOKEN
    else:
        return None
    token = raw.strip()
    if not token:
        raise ValueError(f"{origin} is empty")
    if not token.isascii() or not token.isprintable():
        raise ValueError(f"{origin} holds characters a gRPC header cannot carry")
    return token


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:  # never show the token
        return "_BearerToken(<hidden>)"

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        metadata.append(self._header)
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

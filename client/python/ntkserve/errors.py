"""Exceptions that carry the gRPC status code and the server's message."""
import grpc


class NTKServeError(Exception):
    """A failed call. `code` is the grpc.StatusCode, `details` the server's message."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, details, code=None):
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self):
        return f"{self.code.name}: {self.details}"


class InvalidArgument(NTKServeError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(NTKServeError, KeyError):
    code = grpc.StatusCode.NOT_FOUND

    def __str__(self):  # KeyError would quote the message
        return f"{self.code.name}: {self.details}"


class AlreadyExists(NTKServeError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(NTKServeError, ValueError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(NTKServeError, MemoryError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(NTKServeError, PermissionError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(NTKServeError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class Cancelled(NTKServeError):
    code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(NTKServeError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FitFailed(NTKServeError):
    """A fit job that ended FAILED or CANCELLED; `code` is its error code."""


_BY_CODE = {c.code: c for c in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted,
                                 Unauthenticated, Unavailable, Cancelled, DeadlineExceeded)}


def from_rpc_error(error):
    """The typed exception for a grpc.RpcError."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    cls = _BY_CODE.get(code, NTKServeError)
    return cls(details, code)


def from_code_name(name, details):
    code = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN) if name else grpc.StatusCode.UNKNOWN
    return _BY_CODE.get(code, NTKServeError)(details, code)

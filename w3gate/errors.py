"""The spec's Failure responses: every error the service returns is one of these."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as ``{"error": {"reason": ..., "details": ...}}`` with ``status``."""

    def __init__(self, status: int, reason: str, details: str, retry_after: int | None = None) -> None:
        super().__init__(details)
        self.status = status
        self.reason = reason
        self.details = details
        self.retry_after = retry_after  # seconds: answered as a Retry-After header (RFC 9110 10.2.3)

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"reason": self.reason, "details": self.details}}


def bad_request(details: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", details)


def not_found(details: str = "The specified resource was not found") -> ApiError:
    return ApiError(404, "NOT_FOUND", details)


def unauthorized(details: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", details)

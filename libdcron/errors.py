"""The one error tree of dcron.

Every error a user can cause or meet derives from :class:`DcronError`; its message says what was
wrong and, where it helps, what to do.  The tree is kept shallow on purpose.
"""

from __future__ import annotations


class DcronError(Exception):
    """Root of every dcron error."""


class ValidationError(DcronError):
    """Bad input: a malformed job, cron expression, time zone, message or option."""


class NotFoundError(DcronError):
    """A job, execution, document or object does not exist."""


class ConflictError(DcronError):
    """A write lost a race: the id is taken or the revision is stale."""


class UnavailableError(DcronError):
    """A backing service (document store, object store, election, peer node) cannot be reached.

    Callers retry with backoff; nothing recorded is dropped because of it.
    """


class PluginError(DcronError):
    """No plugin handles a requested URL or name, or a plugin misbehaved."""


class ProtocolError(DcronError):
    """A ZeroMQ message is malformed, of an unknown version or of an unknown command."""


class ForbiddenError(DcronError):
    """The peer is authenticated but its role may not do this (a client key sending DISPATCH)."""


class RemoteError(DcronError):
    """A node answered a request with an error; the message is the node's."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


#: Error classes by the name carried on the wire, so a client re-raises what the node raised.
BY_NAME: dict[str, type[DcronError]] = {
    cls.__name__: cls
    for cls in (
        DcronError,
        ValidationError,
        NotFoundError,
        ConflictError,
        UnavailableError,
        PluginError,
        ProtocolError,
        ForbiddenError,
    )
}

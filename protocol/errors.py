"""AMQP errors raised where they happen and mapped to a close frame in one place (the session).

Invariant: every error carries its reply code, the full reply text as RabbitMQ words it (the
``NAME - `` prefix is added here, once) and its scope. class_id/method_id are filled in by
whoever knows which method was being handled when the error was raised.
"""

from __future__ import annotations


class AMQPError(Exception):
    """Base: an AMQP exception with a reply code and a scope."""

    code: int = 541
    name: str = "INTERNAL_ERROR"
    connection_scope: bool = True

    def __init__(self, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(text)
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        return f"{self.name} - {self.text}"

    def at(self, class_id: int, method_id: int) -> AMQPError:
        """Attach the method that failed, unless a more precise one is already set."""
        if not self.class_id and not self.method_id:
            self.class_id, self.method_id = class_id, method_id
        return self


class ChannelError(AMQPError):
    connection_scope = False


class ConnectionError_(AMQPError):
    connection_scope = True


class AccessRefused(ChannelError):
    code, name = 403, "ACCESS_REFUSED"


class NotFound(ChannelError):
    code, name = 404, "NOT_FOUND"


class ResourceLocked(ChannelError):
    code, name = 405, "RESOURCE_LOCKED"


class PreconditionFailed(ChannelError):
    code, name = 406, "PRECONDITION_FAILED"


class ConnectionForced(ConnectionError_):
    code, name = 320, "CONNECTION_FORCED"


class LoginRefused(ConnectionError_):
    code, name = 403, "ACCESS_REFUSED"


class FrameError(ConnectionError_):
    code, name = 501, "FRAME_ERROR"


class UnreadableFrame(FrameError):
    """frame_too_large, invalid_frame_end_marker: RabbitMQ stops reading the socket, so the
    client's close-ok is never seen and the socket closes 3 s after the close frame."""


class SyntaxError_(ConnectionError_):
    code, name = 502, "SYNTAX_ERROR"


class CommandInvalid(ConnectionError_):
    code, name = 503, "COMMAND_INVALID"


class ChannelErrorConn(ConnectionError_):
    """504 CHANNEL_ERROR: always closes the connection."""

    code, name = 504, "CHANNEL_ERROR"


class UnexpectedFrame(ConnectionError_):
    code, name = 505, "UNEXPECTED_FRAME"


class ResourceError(ConnectionError_):
    code, name = 506, "RESOURCE_ERROR"


class NotAllowed(ConnectionError_):
    code, name = 530, "NOT_ALLOWED"


class NotImplemented_(ConnectionError_):
    code, name = 540, "NOT_IMPLEMENTED"


class InternalError(ConnectionError_):
    code, name = 541, "INTERNAL_ERROR"


class SilentClose(Exception):
    """The peer broke a handshake rule: RabbitMQ drops the socket without a frame."""

    def __init__(self, reason: str, delay: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay

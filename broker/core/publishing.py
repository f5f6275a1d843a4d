"""One publish path: the rules every way in applies before a message is routed, and the
routing itself. AMQP's basic.publish (broker.amqp.channel) and the management API's
``POST /api/exchanges/{vhost}/{name}/publish`` both go through these functions, in RabbitMQ
3.13's order (rabbit_channel's basic.publish): message size, write permission on the exchange,
the exchange exists, it is not internal, topic write permission on the routing key, then the
properties (user_id, expiration); then routing (alternate exchanges, direct reply-to) and the
queues' own rules (length limits and overflow, from arguments or policies).

Invariants:
- Every check raises ``protocol.errors`` with RabbitMQ's code and text; callers turn them into
  a channel.close (AMQP) or a 400 (HTTP), nothing here answers.
- The AMQP hot path calls these per message: each is a few attribute reads in the common case
  (no properties, no topic permissions, a named exchange); what costs more (regexes, property
  decoding) only runs when the message or the user's permissions ask for it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from protocol import properties
from protocol.codec import erlang_tuple
from protocol.errors import AccessRefused, NotFound, PreconditionFailed

from . import replyto
from .messages import peeked

if TYPE_CHECKING:
    from storage.message import Message

    from .users import AuthStore
    from .vhost import VirtualHost



# ---- permissions -------------------------------------------------------------------------
def access_refused(what: str, kind: str, name: str, vhost: str, user: str) -> AccessRefused:
    """``<perm> access to <kind> '<name>' in vhost '<v>' refused for user '<u>'``."""
    shown = "amq.default" if kind == "exchange" and name == "" else name
    return AccessRefused(f"{what} access to {kind} '{shown}' in vhost '{vhost}' refused for "
                         f"user '{user}'")


def require(store: AuthStore, user: str, vhost: str, what: str, kind: str, name: str) -> None:
    if not store.allows(user, vhost, what, kind, name):
        raise access_refused(what, kind, name, vhost, user)


def require_topic(store: AuthStore, user: str, vhost: str, exchange: Any, what: str,
                  routing_key: str, variables: dict[str, str] | None = None) -> None:
    """Topic authorisation: only topic exchanges are checked, against the routing key
    (``write``, publish) or the binding key (``read``, bind and unbind). RabbitMQ 3.13's text:
    ``write access to topic 'k' in exchange 'x' in vhost 'v' refused for user 'u'``."""
    if exchange.type_name != "topic" or not store.has_topic_permissions(user, vhost):
        return
    found = {"username": user, "vhost": vhost}
    if variables:
        found = {**variables, **found}
    if not store.topic_allows(user, vhost, exchange.name, what, routing_key, found):
        raise AccessRefused(f"{what} access to topic '{routing_key}' in exchange "
                            f"'{exchange.name}' in vhost '{vhost}' refused for user '{user}'")


# ---- the message -------------------------------------------------------------------------
def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise PreconditionFailed(f"message size {size} is larger than configured max size "
                                 f"{limit}")


def target_exchange(vhost: VirtualHost, name: str) -> Any:
    """The exchange a publish names: 404 when missing, 403 when internal."""
    exchange = vhost.exchanges.get(name)
    if exchange is None:
        raise NotFound(f"no exchange '{name}' in vhost '{vhost.name}'")
    if exchange.internal:
        raise AccessRefused(f"cannot publish to internal exchange '{name}' in vhost "
                            f"'{vhost.name}'")
    return exchange


def check_properties(message: Message, user: str) -> None:
    """user_id must be the publisher's; expiration must be a non-negative 32-bit integer.
    Reads the message's one walk over its properties (``messages.peeked``), none when it
    has no properties."""
    meta = peeked(message)
    if meta is properties.NOTHING:
        return
    expiration = meta.expiration
    if expiration is not None:
        validate_expiration(expiration)
    user_id = meta.user_id
    if user_id is not None and user_id != user:
        raise PreconditionFailed(f"user_id property set to '{user_id}' but authenticated user "
                                 f"was '{user}'")


def validate_expiration(value: str) -> None:
    """RabbitMQ's rabbit_basic:parse_expiration and its Erlang-term reasons."""
    digits = value
    if not digits or not (digits[0].isdigit() or (digits[0] == "-" and digits[1:2].isdigit())):
        raise PreconditionFailed(f"invalid expiration '{value}': no_integer")
    end = 1
    while end < len(digits) and digits[end].isdigit():
        end += 1
    number, rest = digits[:end], digits[end:]
    if rest:
        raise PreconditionFailed(f"invalid expiration '{value}': {{leftover_string,\"{rest}\"}}")
    parsed = int(number)
    if parsed < 0:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_negative,{parsed}}}")
    if parsed >= 2**32:
        raise PreconditionFailed(erlang_tuple(f"invalid expiration '{value}': ",
                                              "value_too_large", str(parsed)))


# ---- routing -----------------------------------------------------------------------------
REPLIED = (None,)  # route()'s answer when a direct reply-to consumer took the message


def route(vhost: VirtualHost, exchange: Any, message: Message,
          replies: replyto.ReplyRegistry) -> Collection[Any]:
    """The queues the message goes to (alternate exchanges followed), or ``REPLIED`` when it
    was handed to a direct reply-to consumer (``amq.rabbitmq.reply-to.*`` via ``""``).
    Counts the publish on the exchange (``publish_in`` / ``publish_out``): every client
    publish comes through here, dead-lettering and delayed releases do not."""
    queues = vhost.route(exchange, message.routing_key, message.properties)
    exchange.publish_in += 1
    if not queues and exchange is vhost.default_exchange and \
            message.routing_key.startswith(replyto.PREFIX):
        target = replies.lookup(message.routing_key)
        if target is not None:
            target.deliver_reply(message)
            return REPLIED  # RabbitMQ counts a reply in, not out: it reaches no queue
    exchange.publish_out += len(queues)
    return queues

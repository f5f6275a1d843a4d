"""What one AMQP connection may make the broker hold, in one place (issue 12's audit).

Every per-connection and per-channel buffer has a bound, an error or flow control:

- unparsed input: one frame (frame_max + 8) plus one read; a bigger frame is 501
  frame_too_large.
- one message's body: max_message_size, checked on the content header (406, and the body
  frames are dropped as they arrive, never kept); a body frame running past the announced size
  is 501 and closes the connection.
- unfinished messages on all channels of a connection: max_message_size announced bytes; the
  header that would pass it gets 406.
- a message under way during a resource alarm counts as publishing: connection.blocked and no
  more reads, mid-message.
- answers waiting to be written (get-ok, returns, confirms, method replies): OUTPUT_LIMIT, then
  the rest of the read waits in the machine and the socket is not read until the transport's
  buffer drains below its high-water mark (also OUTPUT_LIMIT).
- deliveries waiting to be written: OUTPUT_LIMIT per write; then no deliveries until written.
- unacknowledged deliveries: max_message_size bytes of bodies per connection (at least one
  message); then no deliveries to that connection until acks come.
- consumers: consumer_max_per_channel per channel (530 NOT_ALLOWED, RabbitMQ 3.12's text;
  unlimited by default, as RabbitMQ) and CONSUMERS_PER_CONNECTION per connection (about 450
  bytes each, so ~30 MB).
- basic.get in ack mode while the connection is over its unacknowledged-bytes bound: get-empty
  (the client acks, then gets again).
- channels: channel_max (530); field-table nesting: protocol.methods' depth limit (501).
- after close-ok: CLOSING_TIMEOUT (or the heartbeat when shorter), then the socket is closed.
- CPU: TURN_BUDGET seconds of input handling per connection per loop turn, then its reading
  pauses until the other connections had theirs (fairness, not memory).

So one connection holds at most about 2 x max_message_size + 2 x OUTPUT_LIMIT + frame_max of
message data whatever it sends or fails to read; a node's total is bounded by that times
connection_max, and the memory alarm blocks publishers (a message under way included) before.
"""

from __future__ import annotations

# Bytes of answers or deliveries waiting to be written past which a connection stops handling
# requests and taking deliveries until the transport has taken them (its high-water mark).
OUTPUT_LIMIT = 4 * 1024 * 1024
# After connection.close-ok the socket stays open (read and discarded) until the client closes
# it, at most this long, or the heartbeat interval when that is shorter, as RabbitMQ does.
CLOSING_TIMEOUT = 30.0
# Seconds of one loop turn a connection's input may take before the rest waits for the next
# turn (libuv reads a busy socket up to 32 times per turn: without a budget one client's flood
# of cheap methods held the loop for seconds and starved every other connection).
TURN_BUDGET = 0.005
# Consumers on all channels of one connection (burrowmq's own bound; RabbitMQ has none).
CONSUMERS_PER_CONNECTION = 65536

"""A method in the wrong state or on the wrong channel gets RabbitMQ's answer
(rabbitmq-behaviour.md sections 1, 7 and 8): every catalogued method in every connection state,
as a hypothesis property (CI and soak twins, see machine_strategies.py) and as the exhaustive
table behind it.
"""

from __future__ import annotations

import struct
import warnings

import pytest
from fuzz_wire import (
    HEADER,
    Driver,
    as_method,
    connection_open,
    method_frame,
    raw_frame,
    sstr,
    start_ok,
    tune_ok,
)
from hypothesis import strategies as st
from machine_strategies import assert_close_ok_ends_after_fault, check_closed_stays_closed, fuzz
from pamqp import commands as C

from protocol.connection import State

pytestmark = pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")


# ---- methods in the wrong state or on the wrong channel -------------------------------------

ACCESS_REQUEST = struct.pack(">I", 0x001E000A) + sstr(b"/data") + b"\x1d"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # basic.recover-async
    RECOVER_ASYNC = C.Basic.RecoverAsync(True)
CATALOGUE: list[tuple[str, bytes]] = [
    (m.name, bytes(method_frame(0, m)[7:-1])) for m in [
        C.Connection.Start(), C.Connection.StartOk({}, "PLAIN", "\0guest\0guest", "en_US"),
        C.Connection.Secure("x"), C.Connection.SecureOk("x"), C.Connection.Tune(2047, 131072, 60),
        C.Connection.TuneOk(2047, 131072, 0), C.Connection.Open("/"), C.Connection.OpenOk(),
        C.Connection.Close(200, "bye", 0, 0), C.Connection.CloseOk(), C.Connection.Blocked("x"),
        C.Connection.Unblocked(), C.Connection.UpdateSecret("s", "r"),
        C.Connection.UpdateSecretOk(),
        C.Channel.Open(), C.Channel.OpenOk(), C.Channel.Flow(True), C.Channel.FlowOk(True),
        C.Channel.Close(200, "bye", 0, 0), C.Channel.CloseOk(),
        C.Exchange.Declare(exchange="x"), C.Exchange.DeclareOk(),
        C.Exchange.Delete(exchange="x"), C.Exchange.Bind(destination="a", source="b"),
        C.Exchange.Unbind(destination="a", source="b"),
        C.Queue.Declare(queue="q"), C.Queue.DeclareOk("q", 0, 0),
        C.Queue.Bind(queue="q", exchange="amq.direct"), C.Queue.Purge(queue="q"),
        C.Queue.Delete(queue="q"), C.Queue.Unbind(queue="q", exchange="amq.direct"),
        C.Basic.Qos(prefetch_count=10), C.Basic.Consume(queue="q"),
        C.Basic.ConsumeOk("t"), C.Basic.Cancel("t"), C.Basic.Publish(),
        C.Basic.Get(queue="q"), C.Basic.Ack(1), C.Basic.Reject(1),
        RECOVER_ASYNC, C.Basic.Recover(True), C.Basic.Nack(1),
        C.Basic.Deliver("t", 1, False, "", "q"), C.Confirm.Select(), C.Tx.Select(),
        C.Tx.Commit(), C.Tx.Rollback(),
    ]
] + [("Access.Request", ACCESS_REQUEST)]
STATES = ["start_ok", "tune_ok", "open", "running", "running_ch1", "ch1_server_closing",
          "closing"]


def driver_in(state: str) -> Driver:
    d = Driver()
    d.feed(HEADER)
    if state != "start_ok":
        d.feed(start_ok())
    if state not in ("start_ok", "tune_ok"):
        d.feed(tune_ok())
    if state not in ("start_ok", "tune_ok", "open"):
        d.feed(connection_open())
    if state in ("running_ch1", "ch1_server_closing"):
        d.feed(method_frame(1, C.Channel.Open()))
    if state == "ch1_server_closing":
        d.feed(method_frame(1, C.Queue.Declare(queue="missing", passive=True)))
        assert d.machine.closing_channels == {1}
    if state == "closing":
        d.feed(raw_frame(9, 0, b"abc"))  # unknown frame type: 501, read on after it
        assert d.state is State.CLOSING and d.close_codes == [501]
    d.out.clear()
    return d


def expected_answer(state: str, channel: int, name: str) -> tuple:
    """RabbitMQ's answer (rabbitmq-behaviour.md 1, 7, 8) to one valid method."""
    klass = name.split(".")[0]
    if state in ("start_ok", "tune_ok", "open"):
        if channel:
            return ("fault", 505) if state == "open" else ("silent", 3.0)
        wanted = {"start_ok": "Connection.StartOk", "tune_ok": "Connection.TuneOk",
                  "open": "Connection.Open"}[state]
        if name == wanted:
            return ("ok",)
        if name == "Connection.Close":
            return ("silent", 0.0)
        return ("silent", 3.0)
    if state == "closing":
        if channel == 0 and name in ("Connection.Close", "Connection.CloseOk"):
            return ("silent", 0.0)
        return ("nothing",)
    if state == "ch1_server_closing" and channel == 1:
        return ("nothing",)
    if channel == 0:
        if name == "Connection.Close":
            return ("peer_closed",)
        if name == "Connection.UpdateSecret":
            return ("method",)
        return ("fault", 504)
    if klass == "Connection":
        return ("fault", 503)
    is_open = state == "running_ch1" and channel == 1
    if name == "Channel.Open":
        return ("fault", 504) if is_open else ("method",)
    if not is_open:
        return ("fault", 504)
    if name == "Basic.Publish":
        return ("nothing",)
    return ("method",)


def _wrong_state(state: str, channel: int, entry: tuple[str, bytes]) -> None:
    name, payload = entry
    d = driver_in(state)
    got = d.feed(raw_frame(1, channel, payload))
    d.check_output()
    want = expected_answer(state, channel, name)
    kinds = [type(as_method(e)).__name__ for e in got]
    if want[0] == "fault":
        assert kinds == ["Fault"], (want, got)
        assert got[0].error.code == want[1], (want, got[0].error.reply_text)
        assert d.close_codes == [want[1]]
        assert_close_ok_ends_after_fault(d)
    elif want[0] == "silent":
        assert kinds == ["CloseTransport"], (want, got)
        assert got[0].delay == want[1], (want, got)
        frames = d.check_output()
        assert all(isinstance(f, C.Connection.CloseOk) for _, f in frames), frames
    elif want[0] == "nothing":
        assert got == [], (want, got)
    elif want[0] == "peer_closed":
        assert kinds == ["PeerClosed"], got
    elif want[0] == "method":
        assert kinds == ["Method"] and got[0].channel == channel, (want, got)
    else:  # the handshake step itself
        assert kinds in (["LoginAttempt"], [], ["OpenVhost"]), got
        assert not d.faults
    check_closed_stays_closed(d)


test_method_in_wrong_state, test_method_in_wrong_state_soak = fuzz(
    st.sampled_from(STATES), st.sampled_from([0, 1, 2, 65535]), st.sampled_from(CATALOGUE),
    ci_examples=400,
)(_wrong_state)


def test_every_method_in_every_state() -> None:
    """The exhaustive table behind the property above: 7 states x 4 channels x 48 methods."""
    for state in STATES:
        for channel in (0, 1, 2):
            for entry in CATALOGUE:
                _wrong_state(state, channel, entry)

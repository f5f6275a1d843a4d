"""The AMQPS listener: pika and aio-pika over TLS, certificate verification both ways, the plain
listener next to it, the TLS handshake deadline, and the ssl_options.* keys of rabbitmq.conf."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from urllib.parse import quote

import aio_pika
import pika
import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from pika_helpers import PROTOCOL_HEADER, connect
from tls_certs import PKI, make_pki

from broker.node import config as config_module
from broker.node import tls
from broker.node.config import Config

DEADLINE = 10.0
# how pika reports a refused TLS connection: the ssl error itself, or a connection error
REFUSED = (ssl.SSLError, pika.exceptions.AMQPConnectionError)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:  # type: ignore[no-untyped-def]
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_broker(broker_factory, pki: PKI, **extra):  # type: ignore[no-untyped-def]
    broker = broker_factory(ssl_port=0, ssl_certfile=pki.server_cert,
                            ssl_keyfile=pki.server_key, ssl_cacertfile=pki.ca, **extra)
    assert broker.node.tls_port, "the TLS listener did not start"
    assert broker.node.tls_port != broker.port
    return broker


def tls_params(broker, context: ssl.SSLContext) -> pika.ConnectionParameters:  # type: ignore[no-untyped-def]
    return pika.ConnectionParameters(
        host="127.0.0.1", port=broker.node.tls_port,
        credentials=pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
        connection_attempts=1, socket_timeout=5, stack_timeout=DEADLINE)


def pika_tls(broker, context: ssl.SSLContext) -> pika.BlockingConnection:  # type: ignore[no-untyped-def]
    return pika.BlockingConnection(tls_params(broker, context))


def round_trip(conn: pika.BlockingConnection, body: bytes) -> None:
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", queue, body)
    method, _props, got = ch.basic_get(queue, auto_ack=True)
    assert method is not None and got == body
    ch.close()


def tls_start(port: int, context: ssl.SSLContext) -> object:
    """TLS-connect, send the AMQP header; the first frame back (connection.start), or the
    exception / b"" that ended the attempt."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock = context.wrap_socket(raw, server_hostname="localhost")
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        return exc
    try:
        sock.sendall(PROTOCOL_HEADER)
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            if len(data) >= 7 and len(data) >= int.from_bytes(data[3:7], "big") + 8:
                return pframe.unmarshal(data)[2]
        raise AssertionError("no answer within 5 s")
    except (ssl.SSLError, OSError) as exc:
        return exc
    finally:
        sock.close()


# ---- the listener ------------------------------------------------------------------------

def test_pika_over_tls_publishes_and_gets(broker_factory, pki):
    broker = tls_broker(broker_factory, pki)
    conn = pika_tls(broker, pki.client_context())
    try:
        assert conn.is_open
        round_trip(conn, b"over tls")
    finally:
        conn.close()


def test_tls_port_speaks_tls_and_plain_port_speaks_amqp(broker_factory, pki):
    broker = tls_broker(broker_factory, pki)
    # TLS port: a TLS client gets connection.start
    start = tls_start(broker.node.tls_port, pki.client_context())
    assert isinstance(start, C.Connection.Start), start
    # TLS port: a plain-text AMQP header never gets connection.start back
    raw = socket.create_connection(("127.0.0.1", broker.node.tls_port), timeout=3)
    raw.sendall(PROTOCOL_HEADER)
    try:
        answer = raw.recv(4096)
    except (ConnectionResetError, TimeoutError):
        answer = b""
    raw.close()
    assert not answer.startswith(b"\x01\x00\x00"), answer  # not an AMQP method frame
    # plain port: a TLS client hello is not AMQP, so no TLS session comes up there
    refused = tls_start(broker.port, pki.client_context())
    assert isinstance(refused, (ssl.SSLError, OSError)), refused


def test_plain_listener_keeps_working_next_to_tls(broker_factory, pki):
    broker = tls_broker(broker_factory, pki)
    secure = pika_tls(broker, pki.client_context())
    plain = connect(broker)
    try:
        sch = secure.channel()
        sch.queue_declare("across")
        pch = plain.channel()
        pch.confirm_delivery()
        pch.basic_publish("", "across", b"plain to tls")
        method, _props, body = sch.basic_get("across", auto_ack=True)
        assert method is not None and body == b"plain to tls"
        sch.basic_publish("", "across", b"tls to plain")
        deadline = time.monotonic() + 3
        while True:
            method, _props, body = pch.basic_get("across", auto_ack=True)
            if method is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert body == b"tls to plain"
        round_trip(plain, b"plain alone")
    finally:
        secure.close()
        plain.close()


async def get_one(queue):  # type: ignore[no-untyped-def]
    """basic.get until a message comes (3 s at most)."""
    deadline = time.monotonic() + 3
    while True:
        msg = await asyncio.wait_for(queue.get(timeout=5, fail=False), DEADLINE)
        if msg is not None:
            return msg
        assert time.monotonic() < deadline, "no message within 3 s"
        await asyncio.sleep(0.02)


async def test_aio_pika_amqps_url_with_cafile(broker_factory, pki):
    broker = tls_broker(broker_factory, pki)
    url = (f"amqps://guest:guest@127.0.0.1:{broker.node.tls_port}/"
           f"?cafile={quote(pki.ca, safe='')}")
    conn = await asyncio.wait_for(aio_pika.connect(url), DEADLINE)
    try:
        ch = await conn.channel()
        queue = await ch.declare_queue("", exclusive=True)
        await ch.default_exchange.publish(aio_pika.Message(b"aio over tls"), queue.name)
        msg = await get_one(queue)
        assert msg.body == b"aio over tls"
        await msg.ack()
    finally:
        await asyncio.wait_for(conn.close(), DEADLINE)


async def test_aio_pika_ssl_context_with_client_cert_under_verify_peer(broker_factory, pki):
    broker = tls_broker(broker_factory, pki, ssl_verify="verify_peer",
                        ssl_fail_if_no_peer_cert=True)
    url = f"amqps://guest:guest@localhost:{broker.node.tls_port}/"
    conn = await asyncio.wait_for(
        aio_pika.connect(url, ssl_context=pki.client_context(cert=True)), DEADLINE)
    try:
        ch = await conn.channel()
        queue = await ch.declare_queue("", exclusive=True)
        await ch.default_exchange.publish(aio_pika.Message(b"mutual"), queue.name)
        got = await get_one(queue)
        assert got.body == b"mutual"
    finally:
        await asyncio.wait_for(conn.close(), DEADLINE)


async def test_aio_pika_without_client_cert_is_refused_under_fail_if_no_peer_cert(
        broker_factory, pki):
    broker = tls_broker(broker_factory, pki, ssl_verify="verify_peer",
                        ssl_fail_if_no_peer_cert=True)
    url = (f"amqps://guest:guest@127.0.0.1:{broker.node.tls_port}/"
           f"?cafile={quote(pki.ca, safe='')}")
    with pytest.raises((aio_pika.exceptions.AMQPConnectionError, ssl.SSLError,
                        ConnectionError, OSError)):
        conn = await asyncio.wait_for(aio_pika.connect(url), DEADLINE)
        await conn.close()


# ---- verification ------------------------------------------------------------------------

def test_client_trusting_another_ca_is_refused(broker_factory, pki):
    broker = tls_broker(broker_factory, pki)
    wrong = pki.client_context(cafile=pki.other_ca)
    result = tls_start(broker.node.tls_port, wrong)
    assert isinstance(result, ssl.SSLCertVerificationError), result
    with pytest.raises(REFUSED):
        pika_tls(broker, wrong)
    # and the broker still serves a client that trusts the right CA
    conn = pika_tls(broker, pki.client_context())
    round_trip(conn, b"still serving")
    conn.close()


def test_fail_if_no_peer_cert_refuses_a_client_without_cert(broker_factory, pki):
    broker = tls_broker(broker_factory, pki, ssl_verify="verify_peer",
                        ssl_fail_if_no_peer_cert=True)
    result = tls_start(broker.node.tls_port, pki.client_context())
    assert not isinstance(result, C.Connection.Start), "a client without a cert got in"
    with pytest.raises(REFUSED):
        pika_tls(broker, pki.client_context())


def test_fail_if_no_peer_cert_refuses_a_cert_from_another_ca(broker_factory, pki):
    broker = tls_broker(broker_factory, pki, ssl_verify="verify_peer",
                        ssl_fail_if_no_peer_cert=True)
    result = tls_start(broker.node.tls_port, pki.client_context(other_cert=True))
    assert not isinstance(result, C.Connection.Start), "a stranger's cert was accepted"
    with pytest.raises(REFUSED):
        pika_tls(broker, pki.client_context(other_cert=True))


def test_fail_if_no_peer_cert_admits_a_ca_signed_client_cert(broker_factory, pki):
    broker = tls_broker(broker_factory, pki, ssl_verify="verify_peer",
                        ssl_fail_if_no_peer_cert=True)
    start = tls_start(broker.node.tls_port, pki.client_context(cert=True))
    assert isinstance(start, C.Connection.Start), start
    conn = pika_tls(broker, pki.client_context(cert=True))
    try:
        round_trip(conn, b"with a cert")
    finally:
        conn.close()


def test_verify_peer_without_fail_if_no_peer_cert_admits_certless_clients(broker_factory, pki):
    broker = tls_broker(broker_factory, pki, ssl_verify="verify_peer",
                        ssl_fail_if_no_peer_cert=False)
    conn = pika_tls(broker, pki.client_context())
    try:
        round_trip(conn, b"no cert needed")
    finally:
        conn.close()
    # but a certificate that is presented must still verify
    result = tls_start(broker.node.tls_port, pki.client_context(other_cert=True))
    assert not isinstance(result, C.Connection.Start), "a stranger's cert was accepted"


def test_stalled_tls_handshake_is_dropped(broker_factory, pki):
    broker = tls_broker(broker_factory, pki, handshake_timeout=0.5)
    raw = socket.create_connection(("127.0.0.1", broker.node.tls_port), timeout=3)
    started = time.monotonic()
    try:
        data = raw.recv(4096)  # send nothing: no ClientHello ever
    except ConnectionResetError:
        data = b""
    except TimeoutError:
        pytest.fail("a socket that never starts TLS was kept open for 3 s")
    finally:
        raw.close()
    assert data == b""
    assert time.monotonic() - started < 1.5


def test_server_context_with_missing_files_is_a_config_error(tmp_path, pki):
    cfg = Config(ssl_certfile=str(tmp_path / "nope.pem"), ssl_keyfile=pki.server_key)
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(cfg)
    ctx = tls.server_context(Config(ssl_certfile=pki.server_cert, ssl_keyfile=pki.server_key,
                                    ssl_cacertfile=pki.ca, ssl_verify="verify_peer",
                                    ssl_fail_if_no_peer_cert=True))
    assert ctx.verify_mode == ssl.CERT_REQUIRED


# ---- configuration -----------------------------------------------------------------------

def test_rabbitmq_conf_ssl_options(tmp_path, pki, broker_factory):
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(
        "listeners.tcp.default = 127.0.0.1:5673\n"
        "listeners.ssl.default = 127.0.0.1:5674\n"
        f"ssl_options.cacertfile = {pki.ca}\n"
        f"ssl_options.certfile   = {pki.server_cert}\n"
        f"ssl_options.keyfile    = {pki.server_key}\n"
        "ssl_options.verify     = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n")
    cfg = config_module.from_file(Config(), str(conf))
    assert (cfg.ssl_host, cfg.ssl_port) == ("127.0.0.1", 5674)
    assert (cfg.host, cfg.port) == ("127.0.0.1", 5673)
    assert cfg.ssl_cacertfile == pki.ca
    assert cfg.ssl_certfile == pki.server_cert
    assert cfg.ssl_keyfile == pki.server_key
    assert cfg.ssl_verify == "verify_peer"
    assert cfg.ssl_fail_if_no_peer_cert is True
    assert tls.enabled(cfg)
    # the parsed settings run a listener that wants client certificates
    broker = broker_factory(ssl_port=0, ssl_host=cfg.ssl_host, ssl_certfile=cfg.ssl_certfile,
                            ssl_keyfile=cfg.ssl_keyfile, ssl_cacertfile=cfg.ssl_cacertfile,
                            ssl_verify=cfg.ssl_verify,
                            ssl_fail_if_no_peer_cert=cfg.ssl_fail_if_no_peer_cert)
    assert isinstance(tls_start(broker.node.tls_port, pki.client_context(cert=True)),
                      C.Connection.Start)
    assert not isinstance(tls_start(broker.node.tls_port, pki.client_context()),
                          C.Connection.Start)


def test_rabbitmq_conf_ssl_port_only_and_false_flag(tmp_path):
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("listeners.ssl.default = 5671\n"
                    "ssl_options.verify = verify_none\n"
                    "ssl_options.fail_if_no_peer_cert = false\n")
    cfg = config_module.from_file(Config(), str(conf))
    assert cfg.ssl_port == 5671 and cfg.ssl_host is None
    assert cfg.ssl_verify == "verify_none" and cfg.ssl_fail_if_no_peer_cert is False
    assert not tls.enabled(cfg)  # no certificate: no TLS listener


def test_tls_command_line_flags(monkeypatch, pki):
    for var in ("RABBITMQ_CONFIG_FILE", "RABBITMQ_NODE_PORT", "RABBITMQ_NODE_IP_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    cfg = config_module.parse_args(["--tls-port", "5999", "--tls-cert", pki.server_cert,
                                    "--tls-key", pki.server_key, "--tls-ca", pki.ca,
                                    "--tls-verify-peer", "--tls-require-peer-cert",
                                    "--max-connections", "7", "--data-dir", "/tmp/x"])
    assert cfg.ssl_port == 5999
    assert (cfg.ssl_certfile, cfg.ssl_keyfile, cfg.ssl_cacertfile) == (
        pki.server_cert, pki.server_key, pki.ca)
    assert cfg.ssl_verify == "verify_peer" and cfg.ssl_fail_if_no_peer_cert is True
    assert cfg.connection_max == 7

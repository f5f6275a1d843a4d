"""burrowctl's limit, operator-policy and admin commands as an ops script types them: each
line, output and exit code as RabbitMQ 3.10.8's rabbitmqctl printed them for the same
command, and the effect checked with a real client (a vhost limit refuses the connection past
it, a cleared password refuses the login)."""

from __future__ import annotations

import pika
import pytest
from ops_helpers import Api, amqp_url, burrowctl, connect


def local(handle, *args: str):  # type: ignore[no-untyped-def]
    return burrowctl("--data-dir", handle.data_dir, *args)


def ok(handle, *args: str) -> str:  # type: ignore[no-untyped-def]
    result = local(handle, *args)
    assert result.code == 0, (args, result.out, result.err)
    return result.out


def test_vhost_limits(burrowmq) -> None:  # type: ignore[no-untyped-def]
    ok(burrowmq, "add_vhost", "prod")
    ok(burrowmq, "set_permissions", "-p", "prod", "guest", ".*", ".*", ".*")
    assert ok(burrowmq, "set_vhost_limits", "-p", "prod", '{"max-connections": 1}') == \
        'Setting vhost limits to "{"max-connections": 1}" for vhost "prod" ...\n'
    assert ok(burrowmq, "list_vhost_limits", "-p", "prod") == \
        'Listing limits for vhost "prod" ...\n{"max-connections":1}\n'
    assert ok(burrowmq, "list_vhost_limits", "--global") == \
        'Listing limits for all vhosts ...\nvhost\tlimits\nprod\t{"max-connections":1}\n'
    first = connect(amqp_url(burrowmq, "guest", "guest", "prod"))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(amqp_url(burrowmq, "guest", "guest", "prod"))
    first.close()
    # the whole document is replaced: max-connections goes
    ok(burrowmq, "set_vhost_limits", "-p", "prod", '{"max-queues": 5}')
    assert ok(burrowmq, "list_vhost_limits", "-p", "prod").endswith('{"max-queues":5}\n')
    bad = local(burrowmq, "set_vhost_limits", "-p", "prod", '{"max-bogus": 3}')
    assert bad.code == 69 and "Unrecognised terms [{<<\"max-bogus\">>,3}] in limits" in bad.err
    assert local(burrowmq, "set_vhost_limits", "-p", "prod", "nonsense").code == 69
    assert ok(burrowmq, "clear_vhost_limits", "-p", "prod") == \
        'Clearing vhost "prod" limits ...\n'
    assert ok(burrowmq, "list_vhost_limits", "-p", "prod").endswith("\n{}\n")
    missing = local(burrowmq, "list_vhost_limits", "-p", "nosuch")
    assert missing.code == 65 and "Virtual host 'nosuch' does not exist" in missing.err


def test_user_limits_and_clear_password(burrowmq) -> None:  # type: ignore[no-untyped-def]
    ok(burrowmq, "add_user", "alice", "s3cret")
    ok(burrowmq, "set_permissions", "alice", ".*", ".*", ".*")
    assert ok(burrowmq, "set_user_limits", "alice", '{"max-channels": 5}') == \
        'Setting user limits to "{"max-channels": 5}" for user "alice" ...\n'
    assert ok(burrowmq, "list_user_limits", "--user", "alice") == \
        'Listing limits for user "alice" ...\n{"max-channels":5}\n'
    assert ok(burrowmq, "list_user_limits", "--global") == \
        'Listing limits for all users ...\nuser\tlimits\nalice\t{"max-channels":5}\n'
    assert ok(burrowmq, "clear_user_limits", "alice", "max-channels") == \
        'Clearing "max-channels" limit for user "alice" ...\n'
    assert ok(burrowmq, "list_user_limits", "--user", "alice").endswith("\n{}\n")
    assert local(burrowmq, "set_user_limits", "nobody", '{"max-channels": 1}').code == 67
    connect(amqp_url(burrowmq, "alice", "s3cret")).close()
    assert ok(burrowmq, "clear_password", "alice") == 'Clearing password for user "alice" ...\n'
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(amqp_url(burrowmq, "alice", "s3cret"))
    assert local(burrowmq, "authenticate_user", "alice", "").code != 0
    assert Api(burrowmq.management_port).get("/api/users/alice")["tags"] == []


def test_operator_policies(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert ok(burrowmq, "set_operator_policy", "cap", "^x", '{"max-length":5}',
              "--apply-to", "queues") == \
        'Setting operator policy override "cap" for pattern "^x" to "{"max-length":5}" with ' \
        'priority "0" for vhost "/" ...\n'
    assert ok(burrowmq, "list_operator_policies") == \
        'Listing operator policy overrides for vhost "/" ...\n' \
        'vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tcap\t^x\tqueues\t' \
        '{"max-length":5}\t0\n'
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.queue_declare("xq")
    for i in range(8):
        ch.basic_publish("", "xq", b"%d" % i)
    assert ch.queue_declare("xq", passive=True).method.message_count == 5
    conn.close()
    assert ok(burrowmq, "clear_operator_policy", "cap") == \
        'Clearing operator policy "cap" on vhost "/" ...\n'
    missing = local(burrowmq, "clear_operator_policy", "cap")
    assert missing.code == 69 and "Parameter does not exist" in missing.err


def test_cluster_name_and_closing_a_users_connections(burrowmq) -> None:  # type: ignore
    assert ok(burrowmq, "set_cluster_name", "orders-prod") == \
        "Setting cluster name to orders-prod ...\n"
    assert Api(burrowmq.management_port).get("/api/cluster-name")["name"] == "orders-prod"
    ok(burrowmq, "add_user", "bob", "pw")
    ok(burrowmq, "set_permissions", "bob", ".*", ".*", ".*")
    bob = connect(amqp_url(burrowmq, "bob", "pw"))
    guest = connect(burrowmq.url)
    assert ok(burrowmq, "close_all_user_connections", "bob", "maintenance") == \
        "Closing connections of user bob, reason: maintenance...\n"
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        bob.channel().queue_declare("q")
        for _ in range(50):
            bob.process_data_events(0.1)
    assert closed.value.reply_code == 320 and "maintenance" in closed.value.reply_text
    guest.channel().queue_declare("still-open")
    guest.close()

"""burrowmqadmin as rabbitmqadmin's users type it: export / import take a file name, users and
permissions are declared, connections closed, ``help subcommands`` lists everything, and a
missing object type is a usage message, never a Python error."""

from __future__ import annotations

import json

import pika
import pytest
from ops_helpers import amqp_url, burrowmqadmin, connect


def admin(handle, *args: str):  # type: ignore[no-untyped-def]
    return burrowmqadmin("-P", str(handle.management_port), *args)


def test_export_and_import_take_a_file_name(burrowmq, tmp_path, monkeypatch) -> None:  # type: ignore  # noqa: E501
    monkeypatch.chdir(tmp_path)
    assert admin(burrowmq, "declare", "queue", "name=kept", "durable=true").code == 0
    result = admin(burrowmq, "export", "defs.json")
    assert (result.code, result.out) == (0, 'Exported definitions for 127.0.0.1 to '
                                            '"defs.json"\n')
    assert [q["name"] for q in json.loads((tmp_path / "defs.json").read_text())["queues"]] \
        == ["kept"]
    assert admin(burrowmq, "export", "file=other.json").code == 0
    assert (tmp_path / "other.json").exists() and not (tmp_path / "file=other.json").exists()
    assert admin(burrowmq, "delete", "queue", "name=kept").code == 0
    result = admin(burrowmq, "import", "defs.json")
    assert result.code == 0 and result.out.startswith('Uploaded definitions from "127.0.0.1" '
                                                      'to defs.json.')
    names = [q["name"] for q in json.loads(admin(burrowmq, "-f", "raw_json", "list",
                                                 "queues").out)]
    assert names == ["kept"]
    missing = admin(burrowmq, "import", "nope.json")
    assert missing.code == 65 and missing.err.startswith("*** Could not read nope.json")


def test_declare_user_and_permission(burrowmq) -> None:  # type: ignore[no-untyped-def]
    assert admin(burrowmq, "declare", "user", "name=bob", "password=pw",
                 "tags=monitoring").out == "user declared\n"
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(amqp_url(burrowmq, "bob", "pw"))
    assert admin(burrowmq, "declare", "permission", "vhost=/", "user=bob", "configure=.*",
                 "write=.*", "read=.*").out == "permission declared\n"
    connect(amqp_url(burrowmq, "bob", "pw")).close()
    assert admin(burrowmq, "delete", "permission", "vhost=/", "user=bob").code == 0
    assert admin(burrowmq, "delete", "user", "name=bob").out == "user deleted\n"
    short = admin(burrowmq, "declare", "user", "name=x")
    assert short.code == 64
    assert short.err == ("\nERROR: one of mandatory arguments \"['password', "
                         "'password_hash']\" is required\n\nburrowmqadmin --help for help\n\n")


def test_close_connection(burrowmq) -> None:  # type: ignore[no-untyped-def]
    conn = connect(burrowmq.url)
    rows = json.loads(admin(burrowmq, "-f", "raw_json", "list", "connections").out)
    assert admin(burrowmq, "close", "connection", f"name={rows[0]['name']}").out == \
        "connection closed\n"
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        for _ in range(20):
            conn.process_data_events(0.2)
    assert info.value.reply_code == 320
    gone = admin(burrowmq, "close", "connection", f"name={rows[0]['name']}")
    assert gone.code == 65 and gone.err.startswith("*** Not found: connection")


def test_help_subcommands_and_usage_errors(burrowmq) -> None:  # type: ignore
    text = admin(burrowmq, "help", "subcommands").out
    for line in ("  list queues [<column>...]", "  declare user name=... password=... OR "
                 "password_hash=... tags=...", "  declare permission vhost=... user=... "
                 "configure=... write=... read=...", "  close connection name=...",
                 "  export <file>"):
        assert line in text, line
    for args, message in ((["list"], "Don't know what to list: name one of connections"),
                          (["list", "things"], "Don't know how to list things"),
                          (["frobnicate"], "Action frobnicate not understood"),
                          ([], "Action not specified"),
                          (["declare", "queue", "durable=true"],
                           'mandatory argument "name" is required')):
        result = admin(burrowmq, *args)
        assert result.code == 64 and result.err.startswith(f"\nERROR: {message}"), args
        assert "Traceback" not in result.err
    down = burrowmqadmin("-P", "1", "list", "queues")
    assert down.code == 69 and down.err.startswith("*** Could not connect: management API at "
                                                   "127.0.0.1:1")

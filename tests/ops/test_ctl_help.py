"""burrowctl without a node: help, usage errors and their exit codes, as rabbitmqctl prints
them (help on stdout with 0 when asked for; usage on stderr with 64 otherwise)."""

from __future__ import annotations

from ops_helpers import burrowctl

from broker.ops.ctl.__main__ import RUNNERS
from broker.ops.ctl.catalog import COMMANDS
from broker.ops.ctl.lists import LISTS


def test_every_command_has_help_and_every_help_entry_runs() -> None:
    assert set(COMMANDS) == set(RUNNERS) | set(LISTS) | {"help"}


def test_help_lists_every_command_by_group() -> None:
    for args in (["--help"], ["help"], ["-?"]):
        result = burrowctl(*args)
        assert result.code == 0 and result.err == ""
        assert "Available commands:" in result.out and "\nCluster:\n" in result.out
        for name in COMMANDS:
            assert f"\n   {name} " in result.out, (args, name)
        assert result.out.rstrip().endswith(
            "Use 'burrowctl help <command>' to learn more about a specific command")


def test_no_command_prints_usage_to_stderr_with_64() -> None:
    result = burrowctl()
    assert (result.code, result.out) == (64, "")
    assert "\nUsage\n\nburrowctl [--node <node>]" in result.err


def test_unknown_command_is_rabbitmqctls_message_and_64() -> None:
    result = burrowctl("list_quues")
    assert result.code == 64 and result.out == ""
    assert result.err.startswith("\nCommand 'list_quues' not found. \n")
    assert "   list_queues " in result.err


def test_command_help() -> None:
    result = burrowctl("help", "join_cluster")
    assert result.code == 0
    assert "burrowctl [--node <node>] [--quiet] join_cluster [--disc|--ram] " \
           "<existing_cluster_member>" in result.out
    assert burrowctl("list_user_permissions", "--help").out == \
        burrowctl("help", "list_user_permissions").out
    missing = burrowctl("help", "nope")
    assert (missing.code, missing.err) == (64, "Error:\n\nCommand 'nope' not found.\n")


def test_argument_validation() -> None:
    few = burrowctl("add_user", "ann")
    assert few.code == 64
    assert few.err == ("Error (argument validation): not enough arguments.\n"
                       "Arguments given:\n\tadd_user ann\n\nUsage\n\n"
                       "burrowctl [--node <node>] [--quiet] add_user <username> <password>\n")
    many = burrowctl("list_user_permissions", "a", "b")
    assert many.code == 64 and many.err.startswith(
        "Error (argument validation): too many arguments.\n")
    bogus = burrowctl("list_queues", "--bogus")
    assert bogus.code == 64 and bogus.err.startswith(
        "Error (argument validation): Invalid options for this command:\n--bogus : \n")


def test_definition_files_are_checked_before_asking_the_node(tmp_path) -> None:  # type: ignore
    missing = burrowctl("--port", "1", "import_definitions", str(tmp_path / "nope.json"))
    assert missing.code == 65 and missing.err.startswith(
        f"Error (argument validation): Bad argument: File {tmp_path / 'nope.json'} does not "
        "exist\n")
    nodir = burrowctl("--port", "1", "export_definitions", str(tmp_path / "no" / "d.json"))
    assert nodir.code == 65 and f"Directory {tmp_path / 'no'} does not exist" in nodir.err


def test_version() -> None:
    assert burrowctl("version").out == burrowctl("--version").out
    assert burrowctl("version").out.startswith("3.13.7 (burrowmq ")


def test_a_reader_that_goes_away_is_no_traceback() -> None:
    """`burrowctl help | head`, `burrowmqadmin list queues | head`: the reader closes the pipe
    early; the CLI stops quietly, as rabbitmqctl does, without a Python traceback."""
    import os
    import subprocess
    import sys

    for module, args in (("broker.ops.ctl", ["help"]),
                         ("broker.ops.ctl.rabbitmqadmin", ["help", "subcommands"])):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first write: EPIPE every time
        try:
            proc = subprocess.run([sys.executable, "-m", module, *args], stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, \
            (module, proc.stderr)
        assert proc.returncode in (0, 1), (module, proc.returncode)

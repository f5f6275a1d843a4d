"""A user's configuration mistakes: one line naming the file, the line and the reason, exit
status 78 (EX_CONFIG) for the config file and variables and 64 (EX_USAGE) for flags, never a
traceback, and a misspelled key refuses to boot instead of starting on defaults."""

from __future__ import annotations

import pytest
from ops_helpers import run_cli

from broker.__main__ import main
from broker.node import conffile
from broker.node.config import origin, parse_args


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("RABBITMQ_CONFIG_FILE", "RABBITMQ_NODE_PORT", "RABBITMQ_MANAGEMENT_PORT",
                "RABBITMQ_PROMETHEUS_PORT", "BURROWMQ_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)


def boot(tmp_path, text: str | None, *flags: str):  # type: ignore[no-untyped-def]
    args = ["--data-dir", str(tmp_path / "data"), *flags]
    if text is not None:
        conf = tmp_path / "rabbitmq.conf"
        conf.write_text(text)
        args += ["--config-file", str(conf)]
    return run_cli(main, *args)


@pytest.mark.parametrize(("text", "reason"), [
    ("heartbeat = abc\n", 'rabbitmq.conf:1: heartbeat: "abc" cannot be converted to a(n) '
                          "integer"),
    ("# ok\nlistners.tcp.default = 5999\n",
     "rabbitmq.conf:2: You've tried to set listners.tcp.default, but there is no setting with "
     "that name. Did you mean one of these? listeners.tcp.default"),
    ("log.console.level = verbose\n", 'rabbitmq.conf:1: log.console.level: "verbose" is not a '
                                      "log level: use one of debug, info"),
    ("loopback_users.guest = flase\n", 'rabbitmq.conf:1: loopback_users.guest: "flase" cannot '
                                       "be converted to a(n) boolean"),
    ("listeners.tcp.default = 127.0.0.1:99999\n", "rabbitmq.conf:1: listeners.tcp.default: "
                                                   "99999 is not a port number"),
    ("just words\n", "rabbitmq.conf:1: expected 'key = value'"),
    # RabbitMQ 3.10.8 boots with these, then fails every connection (probed); refused here
    ("# tuning\nheartbeat = -1\n", "rabbitmq.conf:2: heartbeat: -1 is lower than the minimum "
                                  "allowed value (0; 0 turns heartbeats off)"),
    ("channel_max = -1\n", "rabbitmq.conf:1: channel_max: -1 is lower than the minimum "
                           "allowed value (0; 0 means no limit)"),
    ("channel_max = 70000\n", "rabbitmq.conf:1: channel_max: 70000 is higher than the maximum "
                              "allowed value (65535)"),
    ("frame_max = -1\n", "rabbitmq.conf:1: frame_max: -1 is lower than the minimum allowed "
                         "value (4096)"),
    ("frame_max = 1000\n", "rabbitmq.conf:1: frame_max: 1000 is lower than the minimum allowed "
                           "value (4096)"),
])
def test_bad_config_file_lines(tmp_path, text: str, reason: str) -> None:  # type: ignore
    result = boot(tmp_path, text)
    assert result.code == 78 and result.out == ""
    assert result.err.startswith(f"burrowmq: error: {tmp_path}/{reason}"), result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_missing_config_file_and_bad_variable(tmp_path, monkeypatch) -> None:  # type: ignore
    result = boot(tmp_path, None, "--config-file", str(tmp_path / "nope.conf"))
    assert (result.code, result.err) == (
        78, f"burrowmq: error: {tmp_path}/nope.conf: config file does not exist\n")
    monkeypatch.setenv("RABBITMQ_NODE_PORT", "abc")
    result = boot(tmp_path, None)
    assert (result.code, result.err) == (
        78, 'burrowmq: error: environment variable RABBITMQ_NODE_PORT: "abc" cannot be '
            "converted to a(n) integer\n")


def test_bad_flags_are_usage_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for flags, text in ((["--port", "abc"], "argument --port: invalid int value: 'abc'"),
                        (["--bogus"], "unrecognized arguments: --bogus"),
                        (["--port", "70000"], "70000 is not a port number (0-65535), set by "
                                              "--port"),
                        (["--heartbeat", "-5"], "heartbeat: -5 is lower than the minimum "
                                                "allowed value (0; 0 turns heartbeats off), "
                                                "set by "
                                                "--heartbeat"),
                        (["--channel-max", "-1"], "channel_max: -1 is lower than the minimum "
                                                  "allowed value (0; 0 means no limit), set by "
                                                  "--channel-max"),
                        (["--frame-max", "4095"], "frame_max: 4095 is lower than the minimum "
                                                  "allowed value (4096), set by --frame-max")):
        result = boot(tmp_path, None, *flags)
        assert result.code in (64, 78) and result.err.startswith(f"burrowmq: error: {text}")
        assert result.err.count("\n") == 1
        if flags[0] != "--port":
            assert result.code == 64 and not (tmp_path / "data").exists()


def test_rabbitmq_settings_without_effect_here_are_accepted(tmp_path) -> None:  # type: ignore
    changes = conffile.parse_text("log.file.level = debug\ncluster_formation.peer_discovery_"
                                  "backend = classic_config\nmanagement.rates_mode = basic\n")
    assert changes == {}


def test_help_shows_defaults_and_version() -> None:
    with pytest.raises(SystemExit) as done:
        run_cli(main, "--help")
    assert done.value.code == 0
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(out.getvalue().split())
    for part in ("default 127.0.0.1", "default 5672", "default 15672", "default 15692",
                 "default 60", "default 131072", "default 2047", "default info",
                 "default 5671", "env RABBITMQ_NODE_PORT", "/.local/share/burrowmq"):
        assert part in text, part
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--version"])
    assert out.getvalue() == "burrowmq 0.1.0 (RabbitMQ 3.13.7 compatible)\n"


def test_origins_name_the_setting(tmp_path, monkeypatch) -> None:  # type: ignore
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("# comment\nlisteners.tcp.default = 127.0.0.1:5999\n"
                    "management.tcp.port = 16000\n")
    cfg = parse_args(["--config-file", str(conf)])
    assert origin(cfg, "port") == f"listeners.tcp.default at {conf}:2"
    assert origin(cfg, "management_port") == f"management.tcp.port at {conf}:3"
    assert origin(cfg, "prometheus_port") is None
    monkeypatch.setenv("RABBITMQ_NODE_PORT", "6001")
    assert origin(parse_args(["--config-file", str(conf)]), "port") == "RABBITMQ_NODE_PORT"
    assert origin(parse_args(["--port", "6002"]), "port") == "--port"
    assert parse_args(["--data-dir", "rel"]).data_dir == str(tmp_path.cwd() / "rel")

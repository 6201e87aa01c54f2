"""What every qwen-auth command shares (cli/auth_common.py): the exit codes scripts rely on (docs/accounts.md)
and CliError carrying one to `qwen-auth`'s exit status."""

from __future__ import annotations

import pytest

from qwen_gateway.cli import auth as cli
from qwen_gateway.cli.auth_common import (ENV_NAME_RE, EXIT_DENIED, EXIT_EXPIRED, EXIT_INTERRUPTED, EXIT_LOCAL,
                                          EXIT_NO_ACCOUNT, EXIT_OK, EXIT_SERVER, CliError)


def test_exit_codes_are_distinct_and_stable():
    codes = (EXIT_OK, EXIT_LOCAL, EXIT_DENIED, EXIT_EXPIRED, EXIT_SERVER, EXIT_NO_ACCOUNT, EXIT_INTERRUPTED)
    assert codes == (0, 1, 2, 3, 4, 5, 130)  # 130: 128 + SIGINT, as shells report an interrupted command


def test_a_cli_error_is_a_local_failure_unless_it_says_otherwise():
    e = CliError("no such account: x")
    assert (str(e), e.code) == ("no such account: x", EXIT_LOCAL)
    assert CliError("denied", EXIT_DENIED).code == 2


@pytest.mark.parametrize("name,ok", [("DASHSCOPE_API_KEY", True), ("_k", True), ("k9", True), ("9k", False),
                                     ("MY-KEY", False), ("", False), ("A B", False), ("KEY\n", False)])
def test_environment_variable_names(name, ok):
    assert bool(ENV_NAME_RE.match(name)) is ok


def test_the_command_exits_with_the_errors_code(tmp_path, capsys):
    """`qwen-auth remove` of an account that does not exist: a CliError, printed after `qwen-auth: `."""
    rc = cli.main(["--qwen-dir", str(tmp_path / ".qwen"), "--state-dir", str(tmp_path / "state"), "remove", "nobody"])
    err = capsys.readouterr().err
    assert rc != EXIT_OK and err.startswith("qwen-auth: ") and "nobody" in err

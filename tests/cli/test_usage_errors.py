"""Usage errors of every ``xenpy`` command: one ``xenpy: error:`` line naming the help to read, exit 64."""

import pytest

from xenpy.cli.errors import EXIT_USAGE
from xenpy.cli.main import main


@pytest.mark.parametrize(
    ("argv", "message", "help_of"),
    [
        ([], "required: COMMAND", "xenpy"),
        (["bogus"], "invalid choice: 'bogus'", "xenpy"),
        (["run"], "required: IMAGE", "xenpy run"),
        (["run", "img", "--memory", "99999"], "argument --memory: must be between 4 and 65536", "xenpy run"),
        (["run", "img", "--timeout", "0"], "argument --timeout: must be positive", "xenpy run"),
        (["run", "img", "--vcpus", "x"], "argument --vcpus: not a number: 'x'", "xenpy run"),
        (["run", "img", "--engine", "kvm"], "argument --engine: unknown engine 'kvm' (available: unicorn)",
         "xenpy run"),
        (["run", "img", "--bogus"], "unrecognized arguments: --bogus", "xenpy"),
        (["inspect", "img", "--memory", "0"], "argument --memory: must be between 1 and 65536 MiB", "xenpy inspect"),
        (["inspect", "img", "--memory", "100000000"], "argument --memory: must be between 1 and 65536 MiB",
         "xenpy inspect"),
        (["abi", "show"], "required: NAME", "xenpy abi show"),
    ],
)
def test_usage_error_is_one_line(capsys, argv, message, help_of) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == EXIT_USAGE
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("xenpy: error: ") and message in line, err
    assert line.endswith(f"(see '{help_of} --help')"), err

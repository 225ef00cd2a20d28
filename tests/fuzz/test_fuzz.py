"""A short fuzz campaign in the quick suite (``tests/fuzz/hypercalls.py``; ``make fuzz`` runs a long one): a few
thousand random hypercalls break no invariant."""

from __future__ import annotations

import pytest

from .hypercalls import HypercallFuzzer, InvariantError, main


@pytest.mark.parametrize("seed", [1, 2])
def test_random_hypercalls_break_no_invariant(seed: int) -> None:
    fuzzer = HypercallFuzzer(seed)
    fuzzer.run(600)
    assert fuzzer.calls == 600


def test_a_broken_invariant_names_the_seed_and_the_call(monkeypatch) -> None:
    fuzzer = HypercallFuzzer(3)
    monkeypatch.setattr(fuzzer.hv, "hypercall", lambda *args: (_ for _ in ()).throw(KeyError("boom")))
    pattern = r"^seed 3, call 1: vCPU \d: hypercall \d+ \(.*\) args .*: raised KeyError"
    with pytest.raises(InvariantError, match=pattern):
        fuzzer.step()


def test_the_command_line_reports_the_slowest_call(capsys) -> None:
    assert main(["--calls", "50", "--seed", "4"]) == 0
    assert "50 calls, no invariant broken; slowest" in capsys.readouterr().out

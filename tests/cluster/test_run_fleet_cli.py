"""``python -m cluster.run_fleet`` rejects bad input with exit status 2 and writes nothing (no Ray started)."""

from __future__ import annotations

import pytest

from cluster import run_fleet
from tests.conftest import make_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny("llama").model.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--ues", "0"], "ues must be an integer >= 1"),
    (["--ues", "abc"], "invalid int value"),
    (["--ues", "2", "--ue-actors", "3"], "ue_actors"),
    (["--policy", "bogus"], "unknown policy"),
    (["--policy", "fixed:9"], "outside 0..4"),
    (["--channel", "nosuch"], "unknown channel process kind"),
    (["--channel", "rayleigh:speed=3"], "unknown parameter"),
    (["--impairment", "digital:bits=99"], "bits"),
    (["--encoding", "int3"], "encoding"),
    (["--devices", "toaster"], "toaster"),
    (["--distances-m", "abc"], "LOW:HIGH"),
    (["--channel", "rayleigh", "--distances-m", "10:20"], "distance_m"),
    (["--model", "/no/such/model"], "cannot load model"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_input_exits_2_and_writes_nothing(tiny_dir, tmp_path, capsys, args, message) -> None:
    out = tmp_path / "out"
    argv = ["--model", tiny_dir, *args, "--out", str(out)]
    assert run_fleet.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_output_path_that_is_a_file(tiny_dir, tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_fleet.main(["--model", tiny_dir, "--out", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert run_fleet.main(["--model", tiny_dir, "--out", str(blocker / "sub")]) == 2
    assert blocker.read_text() == "x"


def test_help_exits_0(capsys) -> None:
    assert run_fleet.main(["--help"]) == 0
    assert "--enforce-link-latency" in capsys.readouterr().out

"""The command line as a whole: fast help, one-line errors everywhere, every command reachable."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rnnlab.cli import build_parser, main
from rnnlab.tasks import TASKS


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_help_and_version_import_no_torch_and_answer_at_once() -> None:
    """`rnnlab --help`, `--version` and every command's `--help` build the whole parser without
    importing torch (it alone takes seconds to import)."""
    code = (
        "import sys, contextlib, io\n"
        "from rnnlab.cli import main\n"
        "for argv in (['--version'], ['--help'], ['train', 'lm', '--help'], ['predict', '--help'],"
        " ['bench', '--help'], ['data', 'captions', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: main(argv)\n"
        "        except SystemExit as e: assert e.code == 0, argv\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]\n"
        "print('ok')\n"
    )
    start = time.perf_counter()
    done = _python(code)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
    # the interpreter's own start included; torch's import alone takes well over a second here
    assert time.perf_counter() - start < 5.0


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rnnlab", "--version"], capture_output=True, text=True, check=False
    )
    from rnnlab import __version__

    assert done.returncode == 0 and done.stdout.strip() == f"rnnlab {__version__}"


def test_every_task_has_train_and_its_commands() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("train", "data", "bench", "experiment", "diagnose"):
        assert name in commands
    for use in ("sample", "eval", "predict", "tag", "translate", "generate-names", "caption"):
        assert use in commands, use
    train = commands["train"]._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(TASKS) <= set(train)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuch"], "invalid choice: 'nosuch'"),
        (["train", "lm", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["train", "classify", "--cell", "foo"], "unknown cell 'foo'"),
        (["train", "tag", "--hidden", "0"], "--hidden-size/--hidden: expected a value > 0"),
        (["bench", "--grid", "abc"], "expected BATCH,TIME,HIDDEN"),
        (["experiment", "nosuch"], "invalid choice: 'nosuch'"),
        (["generate-names", "x", "--language", "a", "-n", "0"], "expected a value"),
        (["sample", "x", "--temperature", "-1"], "--temperature: expected a value >= 0"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(err) == 1 and message in err[0], err
    assert err[0].startswith("rnnlab")


def test_config_file_of_another_task_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"task": "lm", "seq_len": 20}')
    assert main(["train", "classify", "--config", str(path), "--max-steps", "1"]) == 2
    assert "is a config for task 'lm', not 'classify'" in capsys.readouterr().err


def test_train_help_has_one_group_per_config_and_bidirectional_flags_work() -> None:
    from rnnlab.flags import given
    from rnnlab.tasks import get_task

    parser = build_parser()
    tag = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    tag = tag._subparsers._group_actions[0].choices["tag"]
    titles = [g.title for g in tag._action_groups]
    assert len(titles) == len(set(titles)), titles  # 0.1.0 had two groups titled "tagger"
    config = get_task("tag").config
    for argv, expected in (
        ([], None), (["--unidirectional"], False), (["--no-bidirectional"], False),
        (["--bidirectional"], True),
    ):  # fmt: skip
        ns = parser.parse_args(["train", "tag", *argv])
        got = given(ns, config).get("model", {}).get("rnn", {}).get("bidirectional")
        assert got == expected, argv

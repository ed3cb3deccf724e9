"""``python -m unlearn_core report`` and ``prepare``: one line and exit 2 on bad input, the page on good input."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn_core.cli import main


@pytest.fixture(scope="module")
def store_with_a_run(tmp_path_factory):
    """One UNSC run on digits/mlp/class:3 in a fresh store (the models come from the tests' checkpoint cache)."""
    from unlearn_core.pipeline import prepare
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    folder = tmp_path_factory.mktemp("cli_report")
    store = RunStore(folder / "runs.sqlite")
    setup = prepare("digits", "mlp", "class:3", 0, device="cpu")
    run_id, _, _ = run_and_record(setup, "unsc", {"epochs": 1}, store=store, tag="class-demo")
    return folder, run_id


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["report", "--out", "r.html"], "report needs --runs ID,ID, --tag TAG or --sweep TAG"),
    (["report", "--runs", "1", "--tag", "t", "--out", "r.html"], "not allowed with argument"),
    (["report", "--tag", "t"], "the following arguments are required: --out"),
    (["report", "--runs", "1,x", "--out", "r.html"], "run id must be a whole number"),
    (["report", "--runs", "99", "--out", "r.html"], "no run with id 99"),
    (["report", "--tag", "nope", "--out", "r.html"], "no run has the tag 'nope'"),
    (["report", "--sweep", "nope", "--out", "r.html"], "no sweep is recorded with tag 'nope'"),
])
def test_bad_report_requests_are_one_line_and_exit_2(argv, message, store_with_a_run, capsys, tmp_path,
                                                     monkeypatch):
    folder, _ = store_with_a_run
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--store", str(folder / "runs.sqlite")]) == 2
    line = _error_line(capsys)
    assert line.startswith("error: ") and message in line


def test_out_is_checked_before_any_work(store_with_a_run, capsys, monkeypatch):
    import unlearn_core.handout as handout

    folder, run_id = store_with_a_run
    monkeypatch.setattr(handout, "build_handout", lambda *a, **k: pytest.fail("built a report for a bad --out"))
    monkeypatch.setattr(handout, "select_runs", lambda *a, **k: pytest.fail("read runs for a bad --out"))
    store = str(folder / "runs.sqlite")
    for out, reason in ((str(folder), "is a folder"), (store, "it is the run store"),
                        (str(folder / "runs.sqlite" / "r.html"), "")):
        assert main(["report", "--runs", str(run_id), "--store", store, "--out", out]) == 2
        line = _error_line(capsys)
        assert line.startswith("error: --out") and reason in line


def test_report_writes_the_page(store_with_a_run, capsys):
    from unlearn_core.handout import SECTIONS

    folder, run_id = store_with_a_run
    out = folder / "report.html"
    assert main(["report", "--tag", "class-demo", "--store", str(folder / "runs.sqlite"), "--out", str(out),
                 "--device", "cpu", "--points", "300", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"written to {out}" in printed and "1 finished run(s)" in printed
    text = out.read_text(encoding="utf-8")
    assert all(f'<section id="{name}">' in text for name in SECTIONS)
    assert f'data-run-id="{run_id}"' in text and "--method unsc" in text


def test_prepare_status_counts_without_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    assert main(["prepare", "--dataset", "digits", "--status"]) == 0
    assert capsys.readouterr().out.strip() == "ready: 0 of 10 references cached (original not trained yet)"
    assert not list(Path(tmp_path).rglob("*.pt"))
    assert main(["prepare", "--dataset", "nope", "--status"]) == 2
    assert "nope" in _error_line(capsys)
    assert main(["prepare", "--dataset", "digits", "--maps", "pca,tsne"]) == 2  # before any training
    assert "--maps: unknown reducer 'tsne'" in _error_line(capsys)
    assert not list(Path(tmp_path).rglob("*.pt"))


def test_report_to_standard_output_keeps_the_status_line_on_stderr(store_with_a_run, capsys):
    folder, run_id = store_with_a_run
    assert main(["report", "--runs", str(run_id), "--store", str(folder / "runs.sqlite"), "--out", "-",
                 "--device", "cpu", "--points", "300"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("<!DOCTYPE html>") and captured.out.rstrip().endswith("</html>")
    assert "written to -" in captured.err

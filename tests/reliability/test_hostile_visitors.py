"""Issue 11 from a hostile visitor's side, without a browser: paths and markup through the URL (items 3, 4, 11),
weights whose outputs are not finite (items 1, 6), and the limits one session may use up (item 8)."""

from __future__ import annotations

import re
import threading

import pytest
import torch

from unlearn_app.jobs import JobRunner, QueueFull, estimate_bytes
from unlearn_app.state import Choice, SetupCache
from unlearn_app.uploads import accept_upload, probe_outputs
from unlearn_app.urlstate import check_forget_text, choice_from_query, escape_markdown, markdown_code
from unlearn_core.errors import CheckpointError, ForgetSpecError
from unlearn_core.forget import ForgetSpec


# -- item 3: no server file through a forget spec from a browser -------------------------------------------------
def test_a_browser_spec_never_reads_or_probes_a_server_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("4242\n")
    messages = set()
    for path in (str(secret), str(tmp_path / "missing.txt"), "/etc/passwd", "~/x"):
        with pytest.raises(ForgetSpecError) as caught:
            ForgetSpec.parse(f"indices:{path}", allow_files=False)
        messages.add(str(caught.value))
    assert len(messages) == 1  # the same answer whether the file exists or not
    message = messages.pop()
    assert "4242" not in message and "inline" in message
    # The command line keeps its files.
    assert str(ForgetSpec.parse(f"indices:{secret}")) == f"indices:{secret}"
    assert ForgetSpec.parse("indices:4,8,15", allow_files=False).values == ("4", "8", "15")


def test_index_files_from_a_browser_only_inside_the_configured_root(tmp_path):
    root = tmp_path / "indices"
    root.mkdir()
    (root / "mine.txt").write_text("1 2 3")
    outside = tmp_path / "outside.txt"
    outside.write_text("5")
    (root / "link.txt").symlink_to(outside)
    spec = ForgetSpec.parse("indices:mine.txt", allow_files=False, files_root=root)
    assert spec.values == (str((root / "mine.txt").resolve()),)
    for name in ("../outside.txt", str(outside), "link.txt"):
        with pytest.raises(ForgetSpecError, match="outside the allowed root"):
            ForgetSpec.parse(f"indices:{name}", allow_files=False, files_root=root)


def test_control_characters_and_non_ascii_digits():
    from unlearn_core.data import load_dataset

    digits = load_dataset("digits")
    with pytest.raises(ForgetSpecError) as caught:
        ForgetSpec.parse("indices:/no/such\x1b[2Jfile").resolve(digits)  # a CLI path: allowed, but missing
    assert "\x1b" not in str(caught.value) and "\\x1b" in str(caught.value)
    for text in ("class:\u0663", "indices:\u0663,4", "random:\u0660.\u0661"):
        with pytest.raises(ForgetSpecError):
            ForgetSpec.parse(text).resolve(digits)


# -- item 4: markup through the URL -------------------------------------------------------------------------------
@pytest.mark.parametrize("hostile", [
    "[Session expired: click here](https://evil.example/login)",
    "![](https://evil.example/beacon.png)",
    "see www.evil.example or https://evil.example now",
    "<img src=https://evil.example/x.png>",
    ":red[alarm] $\\frac{1}{0}$",
])
def test_escaped_text_keeps_no_link_image_or_markup(hostile):
    escaped = escape_markdown(hostile)
    unescaped_rest = re.sub(r"\\.", "", escaped)  # what markdown still reads as syntax: escaped pairs removed
    for live in ("](", "![", "<img", "://", "www.", ":red[", "$"):
        assert live not in unescaped_rest
    assert re.sub(r"\\(.)", r"\1", escaped) == hostile  # nothing lost: the visitor sees what was written
    span = markdown_code(f"class:3` [x](https://evil.example) `")
    assert span.count("`") == 2  # a backtick can no longer close the code span early


def test_query_parameters_are_checked_against_the_registries():
    defaults = {"dataset": "mnist5k", "model": "", "forget": "class:3"}
    values, warnings = choice_from_query(
        {"dataset": "nope](https://evil.example)", "model": "resnet18", "forget": "indices:/etc/passwd"}, defaults)
    assert values == {"dataset": "mnist5k", "model": "resnet18", "forget": "class:3"}
    assert len(warnings) == 2
    assert not any("evil" in w or "passwd" in w for w in warnings)  # the hostile value is never repeated
    values, warnings = choice_from_query({"dataset": "digits", "forget": " CLASS : 1, 7 "}, defaults)
    assert values["forget"] == "class:1,7" and not warnings
    for bad in ("class:3](https://evil.example)", "class:![x](y)", "subclass:`x`"):
        with pytest.raises(ForgetSpecError):
            check_forget_text(bad)


# -- items 1 and 6: weights whose outputs are not finite ----------------------------------------------------------
def _digits_state(**changes):
    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    state = dict(build_for_dataset("mlp", load_dataset("digits"), seed=0).state_dict())
    state.update(changes)
    return state


def _bytes(state) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("changes", [
    {"normalize.std": torch.zeros(1, 1, 1, 1)},
    {"normalize.mean": torch.full((1, 1, 1, 1), 1e30), "normalize.std": torch.full((1, 1, 1, 1), 1e-30)},
    # int64 2**62 is finite as float32 (4.6e18), but two such layers overflow float32 inside the forward pass.
    {"body.1.weight": torch.full((256, 64), 2**62, dtype=torch.int64),
     "body.3.weight": torch.full((128, 256), 2**62, dtype=torch.int64)},
])
def test_an_upload_with_non_finite_outputs_is_refused(changes):
    with pytest.raises(CheckpointError, match="outputs are NaN or infinite"):
        accept_upload(_bytes(_digits_state(**changes)), "digits", "mlp")


def test_an_accepted_upload_is_keyed_by_its_content_and_written_nowhere(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    data = _bytes(_digits_state())
    uploaded = accept_upload(data, "digits", "mlp")
    assert uploaded.sha256 == hashlib.sha256(data).hexdigest()
    assert uploaded.key == f"upload-{uploaded.sha256[:16]}"
    assert 0 <= uploaded.test_accuracy <= 100
    assert not any(tmp_path.rglob("*.pt"))  # no checkpoint file anywhere in the data directory


def test_probe_passes_a_working_model(digits_class3):
    probe_outputs(digits_class3.original.model.cpu(), digits_class3.bundle)


# -- item 8: limits -------------------------------------------------------------------------------------------------
def test_one_session_cannot_queue_more_than_its_limit():
    runner = JobRunner(max_per_owner=3)
    gate = threading.Event()
    try:
        jobs = [runner.submit(f"a{i}", lambda p, c: gate.wait(10), meta={"owner": "a"}) for i in range(3)]
        assert runner.room("a") == 0 and runner.room("b") == 3
        with pytest.raises(QueueFull, match="UNLEARN_MAX_JOBS_PER_SESSION"):
            runner.submit("a3", lambda p, c: None, meta={"owner": "a"})
        other = runner.submit("b0", lambda p, c: None, meta={"owner": "b"})  # another session is not blocked
        gate.set()
        for job in jobs + [other]:
            runner.wait(job, timeout=10)
        assert runner.room("a") == 3
        runner.submit("a4", lambda p, c: None, meta={"owner": "a"})  # room again once they finished
    finally:
        gate.set()
        runner.shutdown()


def test_finished_results_are_let_go_oldest_first_over_the_byte_bound():
    runner = JobRunner(results_bytes=3 * 2**20)
    try:
        jobs = [runner.submit(f"j{i}", lambda p, c: torch.zeros(2**18)) for i in range(5)]  # 1 MiB each
        for job in jobs:
            runner.wait(job, timeout=10)
        kept = [job.result is not None for job in jobs]
        assert kept == [False, False, True, True, True]
        assert runner.results_nbytes() <= 3 * 2**20
        assert all(job.snapshot().status == "done" for job in jobs)  # still listed, only the result is gone
        assert jobs[0].snapshot().meta.get("result_dropped")
    finally:
        runner.shutdown()


def test_setup_cache_keeps_to_its_byte_bound_least_recently_used_first(digits_class3):
    one = estimate_bytes(digits_class3.original.model) * 2  # original + retrained of a digits mlp setup
    cache = SetupCache(max_bytes=int(one * 2.5))
    choices = [Choice("digits", "mlp", f"class:{c}", device="cpu") for c in (1, 2, 4)]
    first = cache.get(choices[0])
    cache.get(choices[1])
    assert cache.get(choices[0]) is first  # a hit refreshes it
    cache.get(choices[2])
    assert cache.peek(choices[1]) is None  # the least recently used went
    assert cache.peek(choices[0]) is first and cache.peek(choices[2]) is not None
    assert cache.nbytes() <= cache.max_bytes


def test_limits_come_from_the_environment(monkeypatch):
    from unlearn_app.state import Limits
    from unlearn_core.errors import UnlearnError

    assert Limits.from_env() == Limits(8, 512 * 2**20, 256 * 2**20)
    monkeypatch.setenv("UNLEARN_MAX_JOBS_PER_SESSION", "2")
    monkeypatch.setenv("UNLEARN_SETUP_CACHE_MB", "64")
    monkeypatch.setenv("UNLEARN_JOB_RESULTS_MB", "0")
    assert Limits.from_env() == Limits(2, 64 * 2**20, 0)
    monkeypatch.setenv("UNLEARN_MAX_JOBS_PER_SESSION", "two")
    with pytest.raises(UnlearnError, match="UNLEARN_MAX_JOBS_PER_SESSION"):
        Limits.from_env()

"""Planning: listing, probing, stems, duration-balanced shards, and the 256 KB Argo parameter limit."""

from __future__ import annotations

import json
import shutil

import pytest

from steps import layout
from steps.layout import output_names
from steps.plan import balance, make_plan
from steps.records import Plan, PlannedFile
from steps.runstate import read_plan, write_plan
from steps.store import LocalStore
from tests.support import FIXTURES, SAMPLES


def test_stems_drop_extensions_unless_two_inputs_collide():
    assert output_names(["a/x.wav", "a/x.mp3", "b/y.flac", "z.ogg"]) == ["a/x.wav", "a/x.mp3", "b/y", "z"]


def test_balance_is_longest_first_onto_least_loaded_shard():
    weights = [10, 9, 8, 7, 6, 5]
    shards = balance(weights, 2)
    loads = sorted(sum(weights[i] for i in s) for s in shards)
    assert loads == [22, 23]
    assert sorted(i for s in shards for i in s) == list(range(6))
    assert balance([5.0], 3) == [[0]]  # never an empty shard


def test_plan_probes_durations_and_ignores_non_audio(tmp_path):
    audio = tmp_path / "in"
    shutil.copytree(SAMPLES, audio)
    (audio / "nested").mkdir()
    shutil.copy(FIXTURES / "speech" / "weather.wav", audio / "nested" / "weather.wav")
    plan = make_plan(LocalStore(audio), str(tmp_path / "out"), "run-1", shard_seconds=20, max_shards=8)
    by_input = {f.input: f for f in plan.files}
    assert set(by_input) == {"jfk.flac", "standup.mp3", "earnings-call.wav", "nested/weather.wav"}
    assert plan.ignored == [{"input": "README.md", "reason": "not an audio file name"}]
    assert by_input["jfk.flac"].duration_s == pytest.approx(11.0, abs=0.1)
    assert by_input["nested/weather.wav"].stem == "nested/weather"
    from steps.defaults import FILE_COST_S

    total = sum(f.duration_s + FILE_COST_S for f in plan.files)  # audio plus each file's fixed cost
    assert len(plan.shards) == min(4, -(-int(total) // 20))
    assert sorted(i for s in plan.shards for i in s) == list(range(4))


def test_unprobeable_file_is_planned_not_dropped(tmp_path):
    shutil.copy(FIXTURES / "bad" / "notes.mp3", tmp_path / "notes.mp3")
    plan = make_plan(LocalStore(tmp_path), str(tmp_path / "out"), "r", shard_seconds=60)
    assert [f.input for f in plan.files] == ["notes.mp3"] and plan.files[0].duration_s is None
    assert plan.shards == [[0]]


def test_plan_round_trips_through_the_store(tmp_path):
    store = LocalStore(tmp_path)
    plan = Plan("r1", "in", "out", [PlannedFile(0, "a.wav", "a", 10, 1.5, "10:1")], [[0]])
    assert write_plan(plan, store) == ["0"]
    assert read_plan(store, "r1") == plan
    with pytest.raises(ValueError, match="shard 3 does not exist"):
        plan.shard_files(3)


def test_ten_thousand_files_fit_an_argo_parameter(tmp_path):
    files = [PlannedFile(i, f"calls/{i:05d}.mp3", f"calls/{i:05d}", 1_000_000, 60.0 + i % 3600, "") for i in range(10_000)]
    shards = balance([f.weight for f in files], 256)
    plan = Plan("big", "s3://in", "s3://out", files, shards)
    param = json.dumps(write_plan(plan, LocalStore(tmp_path)))
    assert len(param.encode()) < 2_000  # the parameter is only shard numbers; Argo allows 256 KB
    assert (tmp_path / layout.plan("big")).stat().st_size > 256 * 1024  # the plan itself would not have fit
    loads = [sum(files[i].weight for i in s) for s in shards]
    assert max(loads) / min(loads) < 1.01  # balanced by duration, not by count


def test_many_short_files_are_spread_by_their_fixed_cost_too(tmp_path):
    """300 one-second clips once all landed in one shard (300 s of audio is far below a shard) and paid their fixed
    work one after another while --parallelism sat unused: shards count each file's fixed cost as well."""
    import numpy as np

    from steps.defaults import FILE_COST_S
    from tests.audio_support import write_wav

    src = tmp_path / "in"
    src.mkdir()
    for i in range(40):
        write_wav(src / f"clip{i:02d}.wav", np.full(16000, 0.01 * (i + 1), dtype=np.float32))
    plan = make_plan(LocalStore(src), str(tmp_path / "out"), "r1", shard_seconds=20, max_shards=64)
    audio_s = sum(f.duration_s for f in plan.files)
    assert audio_s == pytest.approx(40, abs=1)
    expected = -(-(audio_s + 40 * FILE_COST_S) // 20)  # ceil: audio alone would give 2 shards
    assert len(plan.shards) == expected > 2
    assert sorted(i for s in plan.shards for i in s) == list(range(40))
    assert max(map(len, plan.shards)) - min(map(len, plan.shards)) <= 1

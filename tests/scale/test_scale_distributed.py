"""hybridrec.distributed: launch plans, the spec hand-off, and the single-process default.

Multi-GPU runs cannot happen here (no GPU); the launch plans are checked as command lines, and
an integration test runs the real torchrun and accelerate paths with 2 CPU processes (gloo).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scale_support import (  # noqa: F401 (fixtures)
    TINY,
    catalog,
    scale_plugin_site,
    synthetic_transitions,
)

from hybridrec.config import DistributedConfig, PluginRef, load_config
from hybridrec.distributed import (
    DistributedContext,
    FineTuneSpec,
    fine_tune,
    load_transitions,
    plan_launch,
    write_spec,
)
from hybridrec.errors import ConfigError
from hybridrec.interfaces import FineTuner, FineTuneResult
from hybridrec.types import TimeWindow, Workload

WINDOW = TimeWindow(start="2000-06-01T00:00:00Z", end="2000-07-01T00:00:00Z")  # type: ignore[arg-type]


def test_single_is_the_default_engine() -> None:
    config = load_config(environ={})
    assert config.distributed.engine == "single"
    config = load_config(overrides=["distributed.engine=torchrun", "distributed.nproc_per_node=4"],
                         environ={})
    assert (config.distributed.engine, config.distributed.nproc_per_node) == ("torchrun", 4)


def test_torchrun_plan_starts_one_process_per_gpu(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    plan = plan_launch(DistributedConfig(engine="torchrun", master_port=29600), spec, gpus=4,
                       python="/py")
    assert plan.argv[:3] == ("/py", "-m", "torch.distributed.run")
    assert "--nproc-per-node=4" in plan.argv and "--nnodes=1" in plan.argv
    assert "--master-port=29600" in plan.argv
    assert plan.argv[-3:] == ("-m", "hybridrec.distributed", str(spec))
    assert (plan.nproc_per_node, plan.world_size) == (4, 4)
    assert shlex.split(plan.command_line())[-len(plan.argv):] == list(plan.argv)


def test_multi_node_torchrun_plan(tmp_path: Path) -> None:
    config = DistributedConfig(engine="torchrun", nproc_per_node=8, nnodes=2, node_rank=1,
                               master_addr="10.0.0.1", extra_args=["--max-restarts=1"])
    plan = plan_launch(config, tmp_path / "s.json", gpus=8)
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1", "--max-restarts=1"} <= set(plan.argv)
    assert plan.world_size == 16


def test_accelerate_plan(tmp_path: Path) -> None:
    config = DistributedConfig(engine="accelerate", mixed_precision="bf16", nnodes=2)
    plan = plan_launch(config, tmp_path / "s.json", gpus=4, python="/py")
    argv = list(plan.argv)
    assert argv[:3] == ["/py", "-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_processes") + 1] == "8"  # accelerate counts all machines
    assert argv[argv.index("--mixed_precision") + 1] == "bf16"
    assert "--multi_gpu" in argv and "--cpu" not in argv
    # several CPU processes go through accelerate's multi_gpu (torchrun) path, one through --cpu
    cpu = plan_launch(DistributedConfig(engine="accelerate", nproc_per_node=2), tmp_path / "s.json", gpus=0)
    assert "--multi_gpu" in cpu.argv and "--cpu" not in cpu.argv
    one = plan_launch(DistributedConfig(engine="accelerate", nproc_per_node=1), tmp_path / "s.json", gpus=0)
    assert "--cpu" in one.argv and "--multi_gpu" not in one.argv


@pytest.mark.parametrize(
    ("config", "gpus", "message"),
    [
        (DistributedConfig(), 4, "nothing to launch"),
        (DistributedConfig(engine="torchrun"), 0, "no GPU"),
        (DistributedConfig(engine="torchrun", nnodes=2, node_rank=2), 1, "node_rank"),
    ],
)
def test_impossible_plans_say_why(config: DistributedConfig, gpus: int, message: str,
                                  tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_launch(config, tmp_path / "s.json", gpus=gpus)


@given(n=st.integers(0, 500), world=st.integers(1, 9))
def test_rank_shards_partition_the_rows(n: int, world: int) -> None:
    shards = [DistributedContext(rank=r, local_rank=r, world_size=world).shard(n) for r in range(world)]
    merged = np.sort(np.concatenate(shards))
    np.testing.assert_array_equal(merged, np.arange(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_context_reads_the_launcher_environment() -> None:
    ctx = DistributedContext.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.is_main, ctx.distributed) == (3, 1, 4, False, True)
    assert DistributedContext.from_env({}) == DistributedContext()


def test_spec_round_trip(tmp_path: Path) -> None:
    transitions = synthetic_transitions(20, 300)
    spec = FineTuneSpec(generator=TINY, fine_tuner=PluginRef(plugin="ddp-probe"), catalog=catalog(20),
                        window=WINDOW, out_dir=tmp_path / "out")
    path = write_spec(tmp_path / "run", spec, transitions)
    back_spec = FineTuneSpec.model_validate_json(path.read_text())
    assert back_spec.model_copy(update={"checksums": {}}) == spec
    assert set(back_spec.checksums) == {"transitions.npz"}
    back = load_transitions(tmp_path / "run" / "transitions.npz")
    for name in ("c1", "c2", "c3", "ts", "user"):
        np.testing.assert_array_equal(getattr(back, name), getattr(transitions, name))
    with pytest.raises(ConfigError, match="did not return an EvidenceBatch"):
        write_spec(tmp_path / "run2", spec, transitions, evidence_fn=lambda c, t: None)  # type: ignore[arg-type,return-value]


def test_run_folder_holds_arrays_and_json_only_and_is_checksummed(tmp_path: Path) -> None:
    """Evidence is precomputed into arrays (never pickled); a rank refuses a tampered file."""
    from hybridrec.distributed import (
        EVIDENCE_FILE,
        TRANSITIONS_FILE,
        PrecomputedEvidence,
        _verified,
    )
    from hybridrec.errors import HybridrecError
    from hybridrec.types import EvidenceBatch

    transitions = synthetic_transitions(20, 300)
    spec = FineTuneSpec(generator=TINY, fine_tuner=PluginRef(plugin="ddp-probe"), catalog=catalog(20),
                        window=WINDOW, out_dir=tmp_path / "out")

    def evidence(contexts: np.ndarray, as_of: np.ndarray) -> EvidenceBatch:
        batch = EvidenceBatch.empty(contexts, width=2)
        batch.cluster[:, 0] = (contexts[:, 0] + 1) % 20
        return batch

    path = write_spec(tmp_path / "run", spec, transitions, evidence_fn=evidence)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == sorted([EVIDENCE_FILE, TRANSITIONS_FILE, "spec.json"])
    assert all((p.stat().st_mode & 0o077) == 0 for p in run.iterdir())
    loaded = FineTuneSpec.model_validate_json(path.read_text())
    back = PrecomputedEvidence.load(_verified(run, loaded, EVIDENCE_FILE))
    rows = transitions.window(WINDOW)
    ctx = np.stack([rows.c1, rows.c2], axis=1)[:7]
    np.testing.assert_array_equal(back(ctx, rows.ts[:7]).cluster, evidence(ctx, rows.ts[:7]).cluster)
    with pytest.raises(HybridrecError, match="no precomputed evidence"):
        back(ctx[:1], rows.ts[:1] - 10**9)
    blob = bytearray((run / EVIDENCE_FILE).read_bytes())
    blob[-30] ^= 0xFF
    (run / EVIDENCE_FILE).write_bytes(bytes(blob))
    with pytest.raises(HybridrecError, match="checksum"):
        _verified(run, loaded, EVIDENCE_FILE)


class RecordingFineTuner(FineTuner):
    """Single-process only (no supports_distributed): records what it was called with."""

    name: ClassVar[str] = "scale-recording"
    calls: ClassVar[list[dict[str, Any]]] = []

    def fine_tune(self, generator: Any, transitions: Any, window: Any, out_dir: Path, *,
                  previous_adapter: Path | None = None, evidence_fn: Any = None,
                  progress: bool = False) -> FineTuneResult:
        self.calls.append({"generator": generator, "n": len(transitions.window(window)),
                           "previous": previous_adapter})
        return FineTuneResult(adapter_path=out_dir, manifest={}, metrics={"recall": 0.5},
                              train_tokens=1, seconds=0.0)

    def workload(self, n_transitions: int, generator: Any) -> Workload:
        return Workload()


class _RecordingPlugin:
    from hybridrec import hookimpl

    @staticmethod
    @hookimpl
    def register_fine_tuners(register: Any) -> None:
        register(RecordingFineTuner)


def test_single_engine_calls_the_fine_tuner_in_process(hybridrec_plugin: Any, tmp_path: Path) -> None:
    hybridrec_plugin(_RecordingPlugin(), name="scale-recording")
    RecordingFineTuner.calls.clear()
    sentinel = object()
    transitions = synthetic_transitions(20, 300)
    result = fine_tune(
        DistributedConfig(), generator_ref=TINY, fine_tuner_ref=PluginRef(plugin="scale-recording"),
        catalog=catalog(20), transitions=transitions, window=WINDOW, out_dir=tmp_path / "a",
        previous_adapter=tmp_path / "prev", generator=sentinel,  # type: ignore[arg-type]
    )
    assert result.metrics == {"recall": 0.5}
    [call] = RecordingFineTuner.calls
    assert call["generator"] is sentinel and call["n"] == len(transitions)
    assert call["previous"] == tmp_path / "prev"
    with pytest.raises(ConfigError, match="supports_distributed"):
        fine_tune(
            DistributedConfig(engine="torchrun", nproc_per_node=2), generator_ref=TINY,
            fine_tuner_ref=PluginRef(plugin="scale-recording"), catalog=catalog(20),
            transitions=transitions, window=WINDOW, out_dir=tmp_path / "b",
        )


@pytest.mark.integration
@pytest.mark.usefixtures("scale_plugin_site")
@pytest.mark.parametrize(("engine", "port"), [("torchrun", 29731), ("accelerate", 29741)])
def test_launch_on_two_cpu_processes_matches_one_process(engine: Any, port: int, tmp_path: Path) -> None:
    transitions = synthetic_transitions(20, 400)
    transitions = transitions.take(np.arange(len(transitions) // 2 * 2))  # two equal shards
    common: dict[str, Any] = {
        "generator_ref": TINY, "fine_tuner_ref": PluginRef(plugin="ddp-probe"),
        "catalog": catalog(20), "transitions": transitions, "window": WINDOW,
    }
    single = fine_tune(DistributedConfig(), out_dir=tmp_path / "single", **common)
    config = DistributedConfig(engine=engine, nproc_per_node=2, master_port=port,
                               backend="gloo", timeout_s=150, run_dir=tmp_path / "run")
    launched = fine_tune(config, out_dir=tmp_path / "ddp", **common)
    assert launched.manifest["world_size"] == 2
    written = json.loads((tmp_path / "ddp" / "probe.json").read_text())
    assert written["world_size"] == 2 and written["rows_seen"] == len(transitions)
    # averaged over 2 equal shards, the DDP gradient is the single-process gradient
    assert written["grad"] == pytest.approx(single.metrics["grad"], rel=1e-12)  # up to DDP's averaging
    assert single.metrics["world_size"] == 1
    assert not (tmp_path / "run" / "result.json.tmp").exists()


@pytest.mark.integration
def test_lora_fine_tune_runs_as_two_torchrun_ranks(tmp_path: Path) -> None:
    """The reference fine-tuner under a real launcher: each rank trains on its shard of every
    batch under DDP, rank 0 writes one adapter, and training matches the single process."""
    lora = PluginRef(plugin="lora", options={
        "max_examples": 256, "batch_size": 64, "base_epochs": 1, "holdout_max": 32,
        "guardrail_samples": 8, "checkpoint_every": 2, "seed": 3,
    })
    common: dict[str, Any] = {
        "generator_ref": TINY, "fine_tuner_ref": lora, "catalog": catalog(20),
        "transitions": synthetic_transitions(20, 400), "window": WINDOW,
    }
    single = fine_tune(DistributedConfig(), out_dir=tmp_path / "single", **common)
    config = DistributedConfig(engine="torchrun", nproc_per_node=2, master_port=29761,
                               backend="gloo", timeout_s=300, run_dir=tmp_path / "run")
    launched = fine_tune(config, out_dir=tmp_path / "ddp", **common)
    assert launched.manifest["world_size"] == 2
    assert launched.train_tokens == single.train_tokens
    assert launched.metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], rel=1e-3)
    assert (tmp_path / "ddp" / "manifest.json").is_file()
    assert not (tmp_path / "ddp" / "checkpoints").exists()

    from hybridrec.plugins import build

    contexts = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
    scores = []
    for folder in ("single", "ddp"):
        gen = build("generator", TINY, catalog(20))
        gen.load_adapter(tmp_path / folder)
        scores.append(gen.score_clusters(contexts).float().numpy())
    np.testing.assert_allclose(scores[0], scores[1], atol=2e-3)


@pytest.mark.parametrize("publish", [True, False])
def test_a_rank_that_dies_in_teardown_does_not_fail_a_finished_job(
    publish: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The launcher trusts the published result (rank 0 publishes it only after the final
    barrier), not the exit code alone: gloo can abort a rank while the process group is torn
    down, after the job finished."""
    import logging
    import sys

    from hybridrec.distributed import RESULT_FILE, LaunchPlan, _run_plan
    from hybridrec.errors import HybridrecError

    result = {"adapter_path": str(tmp_path / "a"), "manifest": {"world_size": 2}, "metrics": {},
              "train_tokens": 10, "seconds": 1.0}
    writes = f"open({str(tmp_path / RESULT_FILE)!r}, 'w').write({json.dumps(result)!r}); " if publish else ""
    plan = LaunchPlan(engine="torchrun", argv=(sys.executable, "-c", writes + "raise SystemExit(134)"),
                      nproc_per_node=2, world_size=2)
    if publish:
        with caplog.at_level(logging.WARNING, logger="hybridrec.distributed"):
            got = _run_plan(plan, tmp_path, timeout=60)
        assert got.manifest["world_size"] == 2
        assert "tearing down" in caplog.text and "134" in caplog.text
    else:
        with pytest.raises(HybridrecError, match="failed with exit code 134"):
            _run_plan(plan, tmp_path, timeout=60)

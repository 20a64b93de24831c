"""The workspace and the backtest share the engine: the same action on the same inputs gives the
same ledger record and the same served rows in both."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.llm import INITIAL, LLMStack, PolicyArm, WorkCache, initial_adapter
from hybridrec.config import GuardrailConfig, load_config
from hybridrec.engine.components import Pipeline
from hybridrec.engine.update import UpdateReport, _Update
from hybridrec.generation import all_contexts
from hybridrec.ingest import transitions_of
from hybridrec.plugins import build
from hybridrec.types import UTC, FineTune, RefreshKnowledge, RegenerateTable, TimeWindow
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
NOW = datetime(2000, 2, 1, tzinfo=UTC)


def test_same_action_same_record_and_rows_in_workspace_and_backtest(
    fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    config = load_config(config_file, environ={}, overrides=[
        "generator.plugin=fake-prompt-gen", "update_policy.plugin=static", "serving.k=5",
    ])
    ws = Workspace.init(tmp_path / "ws", config)
    update = _Update(ws, NOW, progress=False)
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    catalog, batch = update.ingest(log, None, UpdateReport(now=NOW, data_until=None))
    transitions = transitions_of(batch, len(catalog), config.data.min_rating)
    update.pipeline = Pipeline(config, catalog)
    data_until = update.data_until(transitions)

    stack = LLMStack(
        generator=build("generator", config.generator, catalog),
        fine_tuner=build("fine_tuner", config.fine_tuner),
        store=build("knowledge_store", config.knowledge_store, catalog),
        cost_model=build("cost_model", config.cost_model),
        guardrails=GuardrailConfig(), workdir=tmp_path / "bt", catalog=catalog,
        refs={"generator": config.generator, "fine_tuner": config.fine_tuner},
        table_k=config.serving.k,
    )
    cache = WorkCache(stack, transitions)
    initial_adapter(cache, transitions, JAN + timedelta(days=10), 10)
    arm = PolicyArm("arm", build("update_policy", "static"), cache, measure_rag_agreement=False)
    arm.begin(transitions, data_until)
    assert arm.adapter == INITIAL

    actions = [
        FineTune(window=TimeWindow.ending_at(data_until, 20), warm_start=False, reason="parity"),
        RefreshKnowledge(window=TimeWindow.ending_at(data_until, 14), reason="parity"),
        RegenerateTable(use_knowledge=True, reason="parity"),
    ]
    for action in actions:
        kind = action.kind
        if kind == "fine_tune":
            update.fine_tune(action, transitions, data_until)  # type: ignore[arg-type]
        elif kind == "refresh_knowledge":
            update.refresh(action, transitions, data_until)  # type: ignore[arg-type]
        else:
            update.regenerate(action, transitions, data_until)  # type: ignore[arg-type]
        arm.execute(action, transitions, NOW)
        ours, theirs = ws.ledger.records()[-1], arm.ledger[-1]
        same = ("action", "at", "flops", "money", "status", "note", "estimate")
        assert ours.model_dump(include=set(same)) == theirs.model_dump(include=set(same)), kind
        assert set(ours.versions_in) == set(theirs.versions_in) and set(ours.versions_out) == set(theirs.versions_out)
    ws.promote(update.entry)

    contexts = all_contexts(len(catalog))
    served = ws.lookup_batch(contexts, config.serving.k)
    np.testing.assert_array_equal(served.ids, arm.serve(contexts, config.serving.k).ids)

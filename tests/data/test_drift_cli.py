"""``hybridrec drift`` end to end on a user file, and the ``data`` bench suite registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridrec.cli import main
from hybridrec.data.synthetic import SyntheticConfig, generate_interactions


def write_dataset(folder: Path) -> tuple[Path, Path]:
    generated = generate_interactions(15_000, SyntheticConfig(n_clusters=8, days=90, n_users=300, seed=2))
    t = generated.interactions
    log = folder / "log.csv"
    with open(log, "w") as fh:
        fh.write("user,item,timestamp,rating\n")
        fh.writelines(
            f"{t.user_ids[u]},{t.item_ids[i]},{ts},{int(r)}\n"
            for u, i, ts, r in zip(t.user, t.item, t.ts, t.rating, strict=True)
        )
        fh.write("ghost,unknown-item,946684800,5\n")
    items = folder / "items.csv"
    clusters = generated.item_cluster
    items.write_text(
        "item,title,categories\n"
        + "".join(f"{name},movie {k},g{clusters[k]}\n" for k, name in enumerate(t.item_ids))
    )
    return log, items


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_drift_command_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, items = write_dataset(tmp_path)
    png = tmp_path / "drift.png"
    code, out, err = run(
        ["drift", "--dataset", "csv", "-o", f"interactions={json.dumps(str(log))}",
         "-o", f"items={json.dumps(str(items))}", "--json", "--plot", str(png)],
        capsys,
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["statistic"] == "top5_successor_jaccard"
    assert isinstance(payload["mean"], float) and isinstance(payload["noise_mean"], float)
    assert payload["variance"] >= 0
    assert [m["month"] for m in payload["months"]][:2] == ["2000-02", "2000-03"]
    assert all(isinstance(m["pairs"], int) and m["pairs"] > 0 for m in payload["months"])
    assert png.exists()


def test_drift_command_reports_user_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, items = write_dataset(tmp_path)
    code, _, err = run(
        ["drift", "--dataset", "csv", "-o", f"interactions={json.dumps(str(log))}",
         "-o", f"items={json.dumps(str(items))}", "-o", 'columns.user="uid"'],
        capsys,
    )
    assert code == 2
    assert "missing required interaction column(s) 'uid'" in err and "Traceback" not in err
    code, _, err = run(["drift", "--dataset", "csv", "--start", "2000/01",
                        "-o", f"interactions={json.dumps(str(log))}", "-o", f"items={json.dumps(str(items))}"], capsys)
    assert code == 2 and "YYYY-MM" in err


def test_data_bench_suite_runs_quick_synthetic_scaling() -> None:
    from hybridrec_datasets.bench import _synthetic

    from hybridrec.plugins import registry

    assert "data" in registry().bench_suites
    timings = _synthetic([2_000, 4_000])
    assert timings["2000"] > 0 and timings["4000_transitions"] > timings["2000_transitions"]

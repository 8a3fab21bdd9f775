"""The quality benchmark runs end to end in its --quick mode (its numbers mean nothing there)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_quality_benchmark_quick_mode_prints_a_table_per_task(tmp_path):
    out = tmp_path / "quality"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for task, metric in (("unet", "mIoU"), ("densenet", "mIoU"), ("resnet", "top-1")):
        assert f"### {task}:" in done.stdout and f"| method | {metric} mean |" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| prunekit defaults |")]
    assert len(rows) == 3 and (out / ".prunekit-quality").is_file()
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "holds files this benchmark did not write" in refused.stderr


@pytest.mark.slow
def test_quality_benchmark_runs_a_zoo_model_per_task_where_the_zoos_import(tmp_path):
    import importlib.util

    if not (importlib.util.find_spec("torchvision") and importlib.util.find_spec("segmentation_models_pytorch")):
        pytest.skip("torchvision or segmentation_models_pytorch is not installed here")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick", "--tasks", "tv_resnet18,smp_unet",
         "--out", str(tmp_path / "quality")],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if done.returncode == 2 and "does not import" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "### tv_resnet18: torchvision.resnet18" in done.stdout and "| method | top-1 mean |" in done.stdout
    assert "### smp_unet: smp.Unet" in done.stdout and "| method | mIoU mean |" in done.stdout

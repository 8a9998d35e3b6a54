"""cnnbook.resnet.converged (``python -m cnnbook.resnet.experiments converged``): the tiny
configuration runs the whole pipeline, a run interrupted inside a network resumes from its last
epoch, what is done is skipped, and another configuration is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnbook.resnet import converged, experiments
from cnnbook.training import plateau

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cifar_subset_dir):
    out = tmp_path_factory.mktemp("converged") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNBOOK_DATA", str(cifar_subset_dir))
        assert experiments.main(["converged", "--tiny", "--out", str(out), "--verbose", "0"]) == 0
    return out


def test_tiny_run_trains_each_network_until_its_plateau_and_lesions_it(tiny_run):
    results = converged.load_converged_results(tiny_run)
    config = converged.TINY_CONVERGED
    assert set(results["histories"]) == set(config.names)
    for name, history in results["histories"].items():
        # the tiny rule: every stage plateaus after 2 epochs, 2 stages
        assert history["stopped"] == "plateau" and history["epochs"] == 4
        assert history["stage"] == [0, 0, 1, 1]
        np.testing.assert_allclose(history["learning_rate"], [0.05, 0.05, 0.005, 0.005])
        assert len(history["val_accuracy"]) == len(history["seconds"]) == 4
        assert 0.0 <= history["test_accuracy"] <= 1.0
        assert (tiny_run / f"{name}.keras").is_file()
    assert not (tiny_run / "checkpoints" / "plain8").exists()
    for name in config.lesion_networks:
        study = results["lesion"][name]
        assert study["images"] == config.lesion_images
        assert len(study["gradient_norms"]) == 3  # depth 8: one block per stage
        assert all(row["gradient_norm"] > 0 for row in study["gradient_norms"])
    assert results["lesion"]["plain8"]["branch_ratios"] == []
    ratios = results["lesion"]["preact8"]["branch_ratios"]
    assert [row["name"] for row in ratios] == [row["name"] for row in
                                                results["lesion"]["preact8"]["gradient_norms"]]
    assert all(row["ratio"] > 0 for row in ratios)
    entry = results["provenance"]
    assert entry["complete"] and entry["command"] == \
        "python -m cnnbook.resnet.experiments converged --tiny"
    assert entry["networks_done"] == config.names and len(entry["sessions"]) == 1


def test_a_run_interrupted_inside_a_network_resumes_from_its_last_epoch(
        tmp_path, cifar_subset_dir, monkeypatch, tiny_run):
    monkeypatch.setenv("CNNBOOK_DATA", str(cifar_subset_dir))
    original = plateau.fit_until_plateau

    class Crash(RuntimeError):
        pass

    def crashing(model, *args, on_epoch=None, **kwargs):
        def crash(row):
            on_epoch(row)
            if model.name.startswith("preact") and row["epoch"] == 2:
                raise Crash

        return original(model, *args, on_epoch=crash, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(plateau, "fit_until_plateau", crashing)
    with pytest.raises(Crash):
        converged.run_converged(converged.TINY_CONVERGED, out)
    assert json.loads((out / "checkpoints" / "preact8" / "state.json").read_text())["epoch"] == 2
    assert "preact8" not in json.loads((out / "histories.json").read_text())
    monkeypatch.setattr(plateau, "fit_until_plateau", original)
    results = converged.run_converged(converged.TINY_CONVERGED, out)
    log = (out / "progress.log").read_text()
    assert "plain8: already trained, skipped" in log and "preact8: resuming" in log
    assert "preact8 epoch 3" in log and log.count("preact8 epoch 1 ") == 1
    history = results["histories"]["preact8"]
    assert history["epochs"] == 4 and history["stage"] == [0, 0, 1, 1]
    # the same as the run that was never interrupted (same seed, same epochs' data)
    whole = converged.load_converged_results(tiny_run)["histories"]["preact8"]
    np.testing.assert_allclose(history["loss"], whole["loss"], rtol=1e-4)
    assert len(results["provenance"]["sessions"]) == 2
    assert not (out / "checkpoints" / "preact8").exists()


def test_another_configuration_is_refused_and_bad_settings_named(tiny_run):
    from dataclasses import replace

    with pytest.raises(ValueError, match="another configuration"):
        converged.run_converged(replace(converged.TINY_CONVERGED, repeats=3), tiny_run)
    with pytest.raises(ValueError, match="window"):
        replace(converged.TINY_CONVERGED, rule={"window": 0})
    with pytest.raises(ValueError, match="preact9"):
        replace(converged.TINY_CONVERGED, lesion_networks=("preact9",))


def test_missing_results_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiments converged --out"):
        converged.load_converged_results(tmp_path)

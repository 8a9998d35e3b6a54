"""cnnbook.resnet.converged (``python -m cnnbook.resnet.experiments converged``): the tiny
configuration runs the whole pipeline, a run interrupted inside a network resumes from its last
epoch, what is done is skipped, and another configuration is refused; and the committed run
(results/resnet_converged): each network moved on exactly when its curve flattened, the studies'
draws and diagnostics, and the saved networks score what the studies say."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
from lesion_records import assert_curves_summarise_their_draws

from cnnbook.resnet import converged, experiments
from cnnbook.training import plateau


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cifar_subset_dir):
    out = tmp_path_factory.mktemp("converged") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNBOOK_DATA", str(cifar_subset_dir))
        assert experiments.main(["converged", "--tiny", "--out", str(out), "--verbose", "0"]) == 0
    return out


def saved_groups(path) -> set[str]:
    """The top-level groups of a saved ``.keras`` file's weights (``layers``, ``optimizer``...)."""
    with zipfile.ZipFile(path) as saved, h5py.File(
            io.BytesIO(saved.read("model.weights.h5")), "r") as weights:
        return set(weights)


@pytest.mark.slow
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
        assert "optimizer" not in saved_groups(tiny_run / f"{name}.keras")
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
    assert set(entry["sessions"][0]) == {"started", "code", "device", "software"}


@pytest.mark.slow
def test_a_run_interrupted_inside_a_network_resumes_from_its_last_epoch(
        tmp_path, cifar_subset_dir, monkeypatch, tiny_run):
    monkeypatch.setenv("CNNBOOK_DATA", str(cifar_subset_dir))
    original = plateau.fit_until_plateau

    class Crash(RuntimeError):
        pass

    # a change of rule recorded by hand while the run trains (as in the committed run)
    edit = {"reason": "recorded while the run trained", "networks_already_done": [],
            "rule_before": {**converged.TINY_CONVERGED.rule, "max_epochs": 3},
            "rule_after": converged.TINY_CONVERGED.rule}

    def crashing(model, *args, on_epoch=None, **kwargs):
        def crash(row):
            on_epoch(row)
            if model.name.startswith("plain") and row["epoch"] == 1:
                record = json.loads((out / "provenance.json").read_text())
                (out / "provenance.json").write_text(json.dumps(
                    {**record, "config_changes": [edit]}))
            if model.name.startswith("preact") and row["epoch"] == 2:
                raise Crash

        return original(model, *args, on_epoch=crash, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(plateau, "fit_until_plateau", crashing)
    with pytest.raises(Crash):
        converged.run_converged(converged.TINY_CONVERGED, out)
    assert json.loads((out / "checkpoints" / "preact8" / "state.json").read_text())["epoch"] == 2
    assert "preact8" not in json.loads((out / "histories.json").read_text())
    # written again after plain8 was done: the hand-recorded change is kept
    assert json.loads((out / "provenance.json").read_text())["config_changes"] == [edit]
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
    assert results["provenance"]["config_changes"] == [edit]
    assert not (out / "checkpoints" / "preact8").exists()


@pytest.mark.slow
def test_another_configuration_is_refused_and_bad_settings_named(tiny_run):
    from dataclasses import replace

    with pytest.raises(ValueError, match="another configuration"):
        converged.run_converged(replace(converged.TINY_CONVERGED, repeats=3), tiny_run)
    with pytest.raises(ValueError, match="window"):
        replace(converged.TINY_CONVERGED, rule={"window": 0})
    with pytest.raises(ValueError, match="preact9"):
        replace(converged.TINY_CONVERGED, lesion_networks=("preact9",))


def test_missing_results_name_the_command_and_an_unfinished_run_loads_what_it_has(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiments converged --out"):
        converged.load_converged_results(tmp_path)
    (tmp_path / "provenance.json").write_text(json.dumps({"complete": False}))
    assert converged.load_converged_results(tmp_path) == {
        "provenance": {"complete": False}, "histories": {}, "lesion": {}}
    (tmp_path / "provenance.json").write_text(json.dumps({"complete": True}))
    with pytest.raises(FileNotFoundError, match="finished run"):
        converged.load_converged_results(tmp_path)


def test_a_network_must_be_saved_to_be_lesioned():
    from dataclasses import replace

    with pytest.raises(ValueError, match="save_weights"):
        replace(converged.TINY_CONVERGED, save_weights=("preact8",))


# --- The committed run (results/resnet_converged) -----------------------------------------------

COMMITTED = converged.CONVERGED_DIR


@pytest.fixture(scope="module")
def committed():
    return converged.load_converged_results(COMMITTED)


def _stopped_falling(errors, rule):
    """The plateau rule written with sums: the last window's total is more than (1 - r) times
    the total of the window before (equal lengths, so the same as comparing means), and less
    than ``absolute`` per epoch below it over the window (``window**2 * absolute`` in totals);
    or less than ``negligible`` per epoch below it, whatever its share."""
    window = rule["window"]
    if len(errors) < 2 * window:
        return False
    recent, before = sum(errors[-window:]), sum(errors[-2 * window:-window])
    negligible = rule.get("negligible_improvement")
    if negligible is not None and before - recent < window * window * negligible:
        return True
    absolute = rule.get("absolute_improvement")
    return recent > (1 - rule["relative_improvement"]) * before and (
        absolute is None or before - recent < window * window * absolute)


def _rule_of_epoch(history, epoch):
    """The rule that decided after ``epoch`` (1-based): the final one, or for a network trained
    across a recorded change of rule, the rule before it up to the epoch of the change."""
    for change in history.get("rule_changes", []):
        if epoch <= change["after_epoch"]:
            return change["rule_before"]
    return converged.FULL_CONVERGED.rule


@pytest.mark.parametrize("name", converged.FULL_CONVERGED.names)
def test_each_committed_network_moved_on_exactly_when_its_training_curve_flattened(committed,
                                                                                     name):
    """Every change of learning rate, and the end, happened at the first epoch where the rule
    held on the training curve as committed; the rates are the paper's (0.1, then tenths, and
    0.01 while a 110-layer network's error is at or above 80%)."""
    if name not in committed["histories"]:  # a run committed before its end says so
        assert not committed["provenance"]["complete"]
        assert name not in committed["provenance"]["networks_done"]
        return
    history = committed["histories"][name]
    errors = [1 - accuracy for accuracy in history["accuracy"]]
    stages = history["stage"]
    depth = experiments.parse_network_name(name)[1]
    expected_stage, stage_errors = (-1 if depth >= 110 else 0), []
    for epoch, (error, stage, rate) in enumerate(zip(errors, stages, history["learning_rate"],
                                                     strict=True)):
        assert stage == expected_stage, (name, epoch + 1)
        rule = _rule_of_epoch(history, epoch + 1)
        assert rate == pytest.approx(0.01 if stage < 0 else 0.1 * 0.1**stage), (name, epoch + 1)
        if stage < 0:
            if error < rule["warmup_until_error"]:
                expected_stage = 0
            continue
        stage_errors.append(error)
        if error < rule["warmup_until_error"] and _stopped_falling(stage_errors, rule):
            expected_stage, stage_errors = stage + 1, []
    rule = converged.FULL_CONVERGED.rule
    if history["stopped"] == "plateau":
        assert expected_stage == rule["stages"], name  # the last stage ended on its plateau
    else:
        assert history["stopped"] == "max_epochs" and len(errors) == rule["max_epochs"]
    assert history["epochs"] == len(errors) == len(history["val_accuracy"])


def test_each_change_of_rule_is_recorded_where_it_happened_and_what_it_cost(committed):
    """A network trained across a change of rule names it in its history (the epoch after which
    the final rule decided) and the provenance names the network; the finished networks listed
    replay under the final rule (the test above); and the cost stated, where the final rule
    would have moved the network on, is that rule replayed on the network's curve."""
    from cnnbook.training.plateau import PlateauRule

    changes = committed["provenance"].get("config_changes", [])
    final = converged.FULL_CONVERGED.rule
    assert changes and PlateauRule(**changes[-1]["rule_after"]) == PlateauRule(**final)
    for before, after in zip(changes, changes[1:], strict=False):
        assert PlateauRule(**before["rule_after"]) == PlateauRule(**after["rule_before"])
    during = {change["network_in_training"]["name"]: change for change in changes
              if change.get("network_in_training")}
    for name, history in committed["histories"].items():
        if name not in during:
            assert "rule_changes" not in history, name
            continue
        change = during[name]
        recorded = change["network_in_training"]
        (in_history,) = history["rule_changes"]
        assert in_history["after_epoch"] == recorded["after_epoch"]
        assert PlateauRule(**in_history["rule_before"]) == PlateauRule(**change["rule_before"])
        # the final rule on the curve as committed: where it would first have moved the network
        errors = [1 - accuracy for accuracy in history["accuracy"]]
        stage = history["stage"][recorded["after_epoch"] - 1]
        stage_epochs = [epoch for epoch, value in enumerate(history["stage"], start=1)
                        if value == stage]
        first_move = next(epoch for epoch in stage_epochs
                          if errors[epoch - 1] < final["warmup_until_error"] and _stopped_falling(
                              [errors[e - 1] for e in stage_epochs if e <= epoch], final))
        assert first_move == recorded["final_rule_would_have_moved_after_epoch"], name
        assert first_move < stage_epochs[-1]  # the cost: epochs the final rule would not ask


def test_committed_run_is_the_documented_command_and_says_what_it_holds(committed):
    record = committed["provenance"]
    assert record["command"] == "python -m cnnbook.resnet.experiments converged"
    from dataclasses import asdict

    assert record["config"] == json.loads(json.dumps(asdict(converged.FULL_CONVERGED)))
    assert set(committed["histories"]) == set(record["networks_done"])
    assert set(committed["lesion"]) == set(record["lesions_done"])
    if record["complete"]:
        assert record["networks_done"] == converged.FULL_CONVERGED.names
    assert record["dataset"]["paths_relative_to"] == "CNNBOOK_DATA"
    text = (COMMITTED / "provenance.json").read_text()
    for marker in ("/work/", "/home/", "/tmp/", "/root/", "/Users/"):
        assert marker not in text, marker
    assert not (COMMITTED / "checkpoints").exists() or not any(
        (COMMITTED / "checkpoints").iterdir()) or not record["complete"]


def test_the_readme_states_what_the_committed_run_cost(committed, repo_root):
    seconds = committed["provenance"]["seconds"]
    training = sum(value for key, value in seconds.items() if key.startswith("train_"))
    lesions = sum(value for key, value in seconds.items() if key.startswith("lesion_"))
    readme = " ".join((repo_root / "README.md").read_text().split())
    assert f"took {training / 3600:.1f} hours of training" in readme
    assert f"and {lesions / 60:.0f} minutes of lesion studies" in readme
    assert (f"ResNet-110: {committed['histories']['preact110']['epochs']} epochs, "
            f"{seconds['train_preact110'] / 3600:.1f} hours") in readme


def test_committed_lesion_studies_have_ten_draws_and_their_diagnostics(committed):
    assert converged.FULL_CONVERGED.repeats >= 10
    for name, study in committed["lesion"].items():
        assert_curves_summarise_their_draws(name, study, converged.FULL_CONVERGED.repeats)
        blocks = [row["name"] for row in study["single_block"]]
        assert [row["name"] for row in study["gradient_norms"]] == blocks
        if name.startswith("preact"):
            assert [row["name"] for row in study["branch_ratios"]] == blocks
        assert study["evaluation_dtype_policy"] == "float32"


@pytest.mark.slow
def test_committed_residual_networks_score_what_their_studies_say(committed, cifar_subset_dir):
    """Keras' own predict on the saved float32 networks gives each study's baseline and the
    accuracy of its costliest single deletion (within two images in 1,000, the tolerance that
    tests/test_experiments.py explains)."""
    import keras

    from cnnbook.course import data
    from cnnbook.resnet import lesion

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNBOOK_DATA", str(cifar_subset_dir))
        (_, _), (x_test, y_test) = data.load_cifar10()
    for name, study in committed["lesion"].items():
        if name.startswith("plain"):  # its weights are not committed (README, .gitignore)
            continue
        assert (COMMITTED / f"{name}.keras").is_file(), f"{name}'s weights are not committed"
        model = keras.models.load_model(COMMITTED / f"{name}.keras", safe_mode=True)
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
        images, labels = x_test[: study["images"]], y_test[: study["images"]]

        def predicted(network, images=images, labels=labels):
            return float(np.mean(np.argmax(network.predict(images, batch_size=250, verbose=0),
                                           axis=1) == labels))

        assert predicted(model) == pytest.approx(study["baseline"], abs=0.002), name
        worst = min(study["single_block"], key=lambda row: row["accuracy"])
        assert predicted(lesion.delete_blocks(model, [worst["name"]])) == pytest.approx(
            worst["accuracy"], abs=0.002), name
    # the live ResNet-20 of the page: its committed weights score its committed test accuracy
    model = keras.models.load_model(COMMITTED / "preact20.keras", safe_mode=True)
    history = committed["histories"]["preact20"]
    predictions = np.argmax(model.predict(x_test, batch_size=500, verbose=0), axis=1)
    assert float(np.mean(predictions == y_test)) == pytest.approx(history["test_accuracy"],
                                                                  abs=0.002)


def test_committed_files_are_results_not_checkpoints_and_not_ignored(repo_root):
    import subprocess

    tracked = subprocess.run(["git", "ls-files", str(COMMITTED.relative_to(repo_root))],
                             cwd=repo_root, capture_output=True, text=True, check=True)
    files = [repo_root / line for line in tracked.stdout.split()]
    assert files, "results/resnet_converged is not committed"
    assert {path.suffix for path in files} <= {".json", ".keras", ".log"}
    assert not [path for path in files if "checkpoints" in path.parts]
    weights = {path.stem for path in files if path.suffix == ".keras"}
    assert weights <= set(converged.FULL_CONVERGED.save_weights)
    for path in files:
        if path.suffix == ".keras":  # finished networks: no optimizer state to double them
            assert "optimizer" not in saved_groups(path), path.name
    assert sum(path.stat().st_size for path in files if path.is_file()) < 16_000_000
    ignored = subprocess.run(["git", "check-ignore", "--no-index",
                              *[str(path.relative_to(repo_root)) for path in files]],
                             cwd=repo_root, capture_output=True, text=True)
    assert ignored.stdout.strip() == "", f".gitignore hides committed results: {ignored.stdout}"

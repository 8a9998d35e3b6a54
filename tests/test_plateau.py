"""cnnbook.training.plateau: the plateau rule against hand-computed windows, the stages and the
warm-up a run goes through, and a run interrupted and resumed against the same run uninterrupted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnbook.nets import models
from cnnbook.training import plateau, train


def test_plateau_needs_two_windows_and_compares_their_means():
    # windows of 2: means 0.50 then 0.40 -> fell by 20%, more than 5%: still falling
    assert not plateau.plateau_reached([0.6, 0.4, 0.45, 0.35], window=2)
    # means 0.40 then 0.39 -> fell by 2.5% < 5%: plateau
    assert plateau.plateau_reached([0.41, 0.39, 0.40, 0.38], window=2)
    # exactly 5% lower is still falling (the rule asks for more than (1 - r) * before to stop)
    assert not plateau.plateau_reached([0.2, 0.2, 0.19, 0.19], window=2, relative_improvement=0.05)
    # a rising error is a plateau; fewer than 2 windows never is
    assert plateau.plateau_reached([0.1, 0.1, 0.2, 0.2], window=2)
    assert not plateau.plateau_reached([0.1, 0.1, 0.2], window=2)
    # only the last two windows count
    assert plateau.plateau_reached([0.9, 0.9, 0.5, 0.5, 0.5, 0.5], window=2)
    # near chance: 0.90 -> 0.86 is 4.4% of the error (a plateau for r = 5%) but 2 points per
    # epoch, more than an absolute threshold of 1 point per epoch allows
    near_chance = [0.91, 0.89, 0.87, 0.85]
    assert plateau.plateau_reached(near_chance, window=2)
    assert not plateau.plateau_reached(near_chance, window=2, absolute_improvement=0.01)
    # and with both thresholds, a small fall in both senses is a plateau
    assert plateau.plateau_reached([0.101, 0.099, 0.098, 0.098], window=2,
                                   absolute_improvement=0.01)
    # near zero: 1.5% -> 1.1% is 27% of the error (still falling for r = 8%) but 0.2 points per
    # epoch; a negligible fall of 0.25 points per epoch (0.5 over the window) makes it a plateau,
    # one of 0.15 (0.3 over the window) does not
    near_zero = [0.016, 0.014, 0.012, 0.010]
    assert not plateau.plateau_reached(near_zero, window=2, relative_improvement=0.08,
                                       absolute_improvement=0.005)
    assert plateau.plateau_reached(near_zero, window=2, relative_improvement=0.08,
                                   absolute_improvement=0.005, negligible_improvement=0.0025)
    assert not plateau.plateau_reached(near_zero, window=2, relative_improvement=0.08,
                                       absolute_improvement=0.005, negligible_improvement=0.0015)


def test_window_means_are_the_two_windows_the_rule_compares():
    assert plateau.window_means([0.9, 0.6, 0.4, 0.45, 0.35], window=2) == pytest.approx(
        ((0.6 + 0.4) / 2, (0.45 + 0.35) / 2))
    with pytest.raises(ValueError, match="at least 4 errors"):
        plateau.window_means([0.5, 0.4, 0.3], window=2)


def test_learning_rates_are_the_recipes_peak_then_tenths():
    np.testing.assert_allclose(plateau.learning_rates("he2015", 128, 3), [0.1, 0.01, 0.001])
    np.testing.assert_allclose(plateau.learning_rates("he2015", 64, 2), [0.05, 0.005])


@pytest.mark.parametrize("field, value", [("window", 0), ("relative_improvement", 1.0),
                                          ("absolute_improvement", 0.0),
                                          ("negligible_improvement", 0.0),
                                          ("stages", 0), ("max_epochs", 0),
                                          ("warmup_until_error", 0.0)])
def test_a_bad_rule_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        plateau.PlateauRule(**{field: value})


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(128, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=128)
    return x, y


def _network(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return models.resnet_cifar(8, preact=True)


# a rule under which every stage ends after two epochs (the error never falls by 99%, and every
# error counts as learning)
QUICK = plateau.PlateauRule(window=1, relative_improvement=0.99, stages=2, max_epochs=10,
                            warmup_until_error=1.0)


class Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_the_whole_run(images, tmp_path):
    whole_model = _network()
    whole = plateau.fit_until_plateau(whole_model, images, batch_size=32, rule=QUICK,
                                      checkpoint=tmp_path / "whole")
    assert whole["stopped"] == "plateau" and whole["epochs"] == 4
    assert whole["history"]["stage"] == [0, 0, 1, 1]
    np.testing.assert_allclose(whole["history"]["learning_rate"], [0.025, 0.025, 0.0025, 0.0025])
    assert whole["stage_epochs"] == {"0": 2, "1": 2}
    assert len(whole["history"]["loss"]) == 4

    def crash_after_three(row):
        if row["epoch"] == 3:
            raise Crash

    with pytest.raises(Crash):
        plateau.fit_until_plateau(_network(), images, batch_size=32, rule=QUICK,
                                  checkpoint=tmp_path / "resumed", on_epoch=crash_after_three)
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["epoch"] == 3 and state["stage"] == 1
    seen = []
    resumed_model = _network(seed=1)  # other initial weights: the checkpoint replaces them
    resumed = plateau.fit_until_plateau(resumed_model, images, batch_size=32, rule=QUICK,
                                        checkpoint=tmp_path / "resumed", on_epoch=seen.append)
    assert [row["epoch"] for row in seen] == [4]
    assert resumed["history"]["stage"] == whole["history"]["stage"]
    np.testing.assert_allclose(resumed["history"]["loss"], whole["history"]["loss"], rtol=1e-5)
    for mine, theirs in zip(resumed_model.get_weights(), whole_model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    # a finished run called again trains nothing and returns the same result
    again = plateau.fit_until_plateau(_network(), images, batch_size=32, rule=QUICK,
                                      checkpoint=tmp_path / "resumed", on_epoch=seen.append)
    assert len(seen) == 1 and again["history"] == resumed["history"]


@pytest.mark.slow
def test_a_checkpoint_of_another_configuration_is_refused(images, tmp_path):
    plateau.fit_until_plateau(_network(), images, batch_size=32,
                              rule=plateau.PlateauRule(max_epochs=1), checkpoint=tmp_path)
    with pytest.raises(ValueError, match="another configuration"):
        plateau.fit_until_plateau(_network(), images, batch_size=64,
                                  rule=plateau.PlateauRule(max_epochs=1), checkpoint=tmp_path)


@pytest.mark.slow
def test_a_checkpoint_continues_under_a_rule_that_replaced_its_own_and_says_when(images,
                                                                                  tmp_path):
    """A rule changed during a run (recorded by the caller as an earlier rule) takes over from
    the checkpoint's next epoch; a rule not declared as replaced is still refused."""
    first = plateau.PlateauRule(window=2, stages=2, max_epochs=2,
                                warmup_until_error=1.0)  # two epochs: too few for two windows
    plateau.fit_until_plateau(_network(), images, batch_size=32, rule=first,
                              checkpoint=tmp_path, on_epoch=lambda row: None)
    state = json.loads((tmp_path / "state.json").read_text())
    state["stopped"] = None  # as if stopped by a crash before the cap, at epoch 2
    (tmp_path / "state.json").write_text(json.dumps(state))
    replacing = plateau.PlateauRule(window=1, relative_improvement=0.0, stages=2, max_epochs=6,
                                    negligible_improvement=0.999, warmup_until_error=1.0)
    with pytest.raises(ValueError, match="another configuration"):
        plateau.fit_until_plateau(_network(), images, batch_size=32, rule=replacing,
                                  checkpoint=tmp_path)
    seen = []
    result = plateau.fit_until_plateau(_network(), images, batch_size=32, rule=replacing,
                                       checkpoint=tmp_path, on_epoch=seen.append,
                                       earlier_rules=[first])
    assert result["rule_changes"] == [{"after_epoch": 2, "rule_before": {
        "window": 2, "relative_improvement": 0.05, "absolute_improvement": None, "stages": 2,
        "negligible_improvement": None, "warmup_until_error": 1.0, "max_epochs": 2}}]
    # the replacing rule's negligible fall of 99.9 points per epoch: every window is a plateau,
    # so its first check (after epoch 3, with epochs 2 and 3 of stage 0) moves on, then the
    # last stage ends after two epochs of its own
    assert [row["epoch"] for row in seen] == [3, 4, 5]
    assert result["history"]["stage"] == [0, 0, 0, 1, 1]
    assert result["stopped"] == "plateau"


@pytest.mark.slow
def test_the_cap_ends_a_run_that_has_not_plateaued(images):
    result = plateau.fit_until_plateau(_network(), images, batch_size=32,
                                       rule=plateau.PlateauRule(max_epochs=2))
    assert result["stopped"] == "max_epochs" and result["epochs"] == 2


@pytest.mark.slow
def test_deep_networks_warm_up_at_a_tenth_until_the_error_is_below_the_threshold(images,
                                                                                 monkeypatch):
    # the warm-up is decided by the depth (110 layers or more); a depth-8 network stands in
    monkeypatch.setattr(train, "network_depth", lambda model: 110)
    # random labels: the training error stays near 90%, above a threshold of 0.5, for ever
    stuck = plateau.fit_until_plateau(_network(), images, batch_size=32, rule=plateau.PlateauRule(
        warmup_until_error=0.5, max_epochs=2))
    assert stuck["history"]["stage"] == [-1, -1]
    np.testing.assert_allclose(stuck["history"]["learning_rate"], [0.0025, 0.0025])
    # with a threshold every error is below, one epoch of warm-up and then the peak
    eager = plateau.PlateauRule(window=1, relative_improvement=0.99, stages=2, max_epochs=3,
                                warmup_until_error=1.0)
    moves_on = plateau.fit_until_plateau(_network(), images, batch_size=32, rule=eager)
    assert moves_on["history"]["stage"] == [-1, 0, 0]
    np.testing.assert_allclose(moves_on["history"]["learning_rate"], [0.0025, 0.025, 0.025])


def test_each_epoch_of_the_stream_is_a_permutation_that_does_not_depend_on_where_it_started():
    images = np.random.default_rng(1).integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(50)  # the labels name the images: each batch says which images it holds
    batch_size, steps = 8, 50 // 8

    def epochs(first, last):
        stream = plateau.epoch_stream(images, labels, batch_size, seed=3, first_epoch=first,
                                      last_epoch=last)
        batches = [(x.numpy(), y.numpy()) for x, y in stream]
        assert len(batches) == (last - first) * steps
        return [batches[index * steps:(index + 1) * steps] for index in range(last - first)]

    from_start, from_two = epochs(0, 3), epochs(2, 3)
    for epoch in from_start:
        seen = np.concatenate([y for _, y in epoch])
        assert len(set(seen)) == len(seen) == steps * batch_size  # no image twice in an epoch
    assert not np.array_equal(from_start[0][0][1], from_start[1][0][1])  # reshuffled
    for (x_a, y_a), (x_b, y_b) in zip(from_start[2], from_two[0], strict=True):
        np.testing.assert_array_equal(y_a, y_b)
        np.testing.assert_array_equal(x_a, x_b)  # the same crops and flips too


@pytest.mark.slow
def test_a_checkpoint_keeps_one_weights_file_and_refuses_files_that_disagree(images, tmp_path):
    rule = plateau.PlateauRule(max_epochs=2)
    plateau.fit_until_plateau(_network(), images, batch_size=32, rule=rule, checkpoint=tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["state.json", state["weights_file"]])
    # a state that says one epoch beside the weights of two (as a crash between the two writes
    # of an older layout could leave): refused, not trained again from a wrong place
    state["epoch"], state["stopped"] = 1, None
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="disagree"):
        plateau.fit_until_plateau(_network(), images, batch_size=32, rule=rule,
                                  checkpoint=tmp_path)


def test_the_stream_seeds_each_epoch_with_epoch_seed():
    assert plateau.epoch_seed(3, 0) + 7 == plateau.epoch_seed(3, 7) == 3 * 100_003 + 7


@pytest.mark.slow
def test_a_network_that_has_not_started_to_learn_is_not_on_a_plateau(images):
    # random labels keep the error near 90%: above a threshold of 50% the flat curve is not a
    # plateau, so the rate stays (the same rule with a threshold of 100% moves on after 2 epochs)
    stuck = plateau.PlateauRule(window=1, relative_improvement=0.99, stages=2, max_epochs=3,
                                warmup_until_error=0.5)
    result = plateau.fit_until_plateau(_network(), images, batch_size=32, rule=stuck)
    assert result["history"]["stage"] == [0, 0, 0] and result["stopped"] == "max_epochs"
    assert min(1 - np.array(result["history"]["accuracy"])) >= 0.5  # the premise held

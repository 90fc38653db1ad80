"""Sweep search spaces: grid and seeded random trials, validation before compute, the best trial."""

from __future__ import annotations

import pytest

from compactlm.config import SweepConfig, load_config
from compactlm.errors import ConfigError
from compactlm.training.sweep import best_trial, expand_space, shares_base, trial_overrides, validate_trials

SPACE = {"finetune.learning_rate": [0.001, 0.003], "finetune.r": [4, 8], "finetune.epochs": [1, 2]}


def test_grid_is_every_combination_and_random_is_a_seeded_distinct_sample():
    grid = expand_space(SweepConfig(space=SPACE))
    assert len(grid) == 8 and len({tuple(t.values()) for t in grid}) == 8
    assert grid[0] == {"finetune.learning_rate": 0.001, "finetune.r": 4, "finetune.epochs": 1}
    assert expand_space(SweepConfig(space=SPACE, n_trials=3)) == grid[:3]
    drawn = expand_space(SweepConfig(method="random", space=SPACE, n_trials=5, seed=7))
    assert len(drawn) == 5 and all(t in grid for t in drawn) and len({tuple(t.values()) for t in drawn}) == 5
    assert drawn == expand_space(SweepConfig(method="random", space=SPACE, n_trials=5, seed=7))
    assert len(expand_space(SweepConfig(method="random", space=SPACE, n_trials=50))) == 8  # never more than the grid
    with pytest.raises(ConfigError, match="sweep.space must name at least one field"):
        expand_space(SweepConfig())


def test_trial_overrides_round_trip_through_the_config_loader():
    trial = {"finetune.learning_rate": 0.003, "finetune.r": 8, "finetune.target_modules": ["q_proj", "v_proj"],
             "train.precision": "fp32"}
    config = load_config(overrides=trial_overrides(trial))
    tuned = config.finetune
    assert (tuned.learning_rate, tuned.r, tuned.target_modules, config.train.precision) == \
        (0.003, 8, ["q_proj", "v_proj"], "fp32")


def test_a_bad_trial_value_fails_before_any_compute_naming_the_field():
    validate_trials(None, [], expand_space(SweepConfig(space=SPACE)))
    with pytest.raises(ConfigError, match=r"^finetune.r must be >= 1, got 0$"):
        validate_trials(None, [], [{"finetune.r": 4}, {"finetune.r": 0}])
    with pytest.raises(ConfigError, match=r"unknown config field 'finetune.rank'"):
        validate_trials(None, [], [{"finetune.rank": 4}])


def test_fine_tuning_only_spaces_share_a_base_and_the_lowest_loss_wins():
    assert shares_base({"finetune.r": [4], "classifier.loss": ["focal"]})
    assert not shares_base({"finetune.r": [4], "train.learning_rate": [0.01]})
    results = [{"trial": 0, "eval_loss": 2.5}, {"trial": 1, "eval_loss": None, "error": "boom"},
               {"trial": 2, "eval_loss": 2.1}, {"trial": 3, "eval_loss": float("nan")}]
    assert best_trial(results)["trial"] == 2
    assert best_trial([{"trial": 0, "eval_loss": None}]) is None

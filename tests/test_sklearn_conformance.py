"""scikit-learn's own estimator checks on both estimators: every check passes except the documented ones (audio
input), and those run once more on a double that scales the checks' tabular data into [-1, 1]."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import SkipTestWarning
from sklearn.utils.estimator_checks import check_estimator

from soundnet_keras.errors import AudioError, AudioTypeError, ConfigError
from soundnet_keras.transfer import ClipClassifier, SoundNetFeatures
from soundnet_keras.transfer.conformance import ANY_LENGTH, SAMPLE_RANGE, expected_failed_checks

pytestmark = pytest.mark.slow


def _quieter(X):
    """Tabular test data (values up to ~100) as audio in [-1, 1]: numeric arrays divided by 1,000."""
    if isinstance(X, (str, list)) or not hasattr(X, "__array__") or hasattr(X, "toarray"):
        return X
    array = np.asarray(X)
    return array / 1000.0 if array.dtype.kind in "fiu" else X


class QuietFeatures(SoundNetFeatures):
    def fit(self, X, y=None):
        return super().fit(_quieter(X), y)

    def transform(self, X):
        return super().transform(_quieter(X))


class QuietClassifier(ClipClassifier):
    def fit(self, X, y):
        return super().fit(_quieter(X), y)

    def _scores(self, X):
        return super()._scores(_quieter(X))


def _run(estimator, expected: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)  # checks for other kinds of estimators say they skip
        results = check_estimator(estimator, expected_failed_checks=expected, on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:300] for r in results if r["status"] == "failed"}
    assert not failed, failed
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    ran = {r["check_name"] for r in results}
    assert xfailed == set(expected) & ran  # every documented exception is still needed
    assert sum(r["status"] == "passed" for r in results) >= 30


@pytest.mark.parametrize("kind", ["features", "classifier"])
def test_check_estimator_with_documented_exceptions(pretrained_net, kind: str) -> None:
    estimator = (SoundNetFeatures if kind == "features" else ClipClassifier)(net=pretrained_net, cache=False)
    _run(estimator, expected_failed_checks(estimator))


@pytest.mark.parametrize("kind", ["features", "classifier"])
def test_sample_range_checks_pass_on_data_in_range(pretrained_net, kind: str) -> None:
    """What the sample-range exceptions skip still holds once the data is audio-like."""
    estimator = (QuietFeatures if kind == "features" else QuietClassifier)(net=pretrained_net, cache=False)
    _run(estimator, expected_failed_checks(estimator, samples_in_range=True))


def test_expected_failures_are_reasoned() -> None:
    for name, reason in {**ANY_LENGTH, **SAMPLE_RANGE}.items():
        assert name.startswith("check_") and len(reason) > 30


def test_estimators_with_a_network_pickle_and_copy(pretrained_net, rng) -> None:
    """joblib workers and deepcopy get the same network (weights as arrays), not a compiled graph."""
    clips = [rng.uniform(-0.5, 0.5, 22050).astype(np.float32) for _ in range(4)]
    model = ClipClassifier(net=pretrained_net, cache=False, window=None, window_features="mean").fit(clips, [0, 1] * 2)
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert other.net is not pretrained_net
        np.testing.assert_array_equal(other.decision_function(clips), model.decision_function(clips))


def test_what_scikit_learn_users_pass_gets_a_clear_answer(pretrained_net, rng) -> None:
    import scipy.sparse

    model = ClipClassifier(net=pretrained_net, cache=False)
    good = rng.uniform(-0.5, 0.5, (4, 22050))
    with pytest.raises(ConfigError, match="sparse input is not supported"):
        model.fit(scipy.sparse.csr_matrix(good), [0, 1, 0, 1])
    with pytest.raises(ConfigError, match="Reshape your data: wrap a single waveform in a list"):
        model.fit(good[0], [0])
    with pytest.raises(ConfigError, match="requires y to be passed"):
        model.fit(good, None)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        model.fit(good, [0.5, 1.5, 2.5, 3.5])
    with pytest.raises(ConfigError, match="got 1 class"):
        model.fit(good, ["a"] * 4)
    with pytest.raises(AudioTypeError, match=r"clip 1 must hold numbers.*not 'dict'"):
        model.fit([good[0], np.array([0.1, {"a": 1}], dtype=object)], [0, 1])
    with pytest.raises(AudioError, match="clip 1 has dtype complex128: Complex data not supported"):
        model.fit([good[0], good[1] + 1j], [0, 1])

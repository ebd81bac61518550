"""scikit-learn's ``check_estimator`` on our estimators: the checks that cannot apply to audio input, with reasons.

Both :class:`~soundnet_keras.transfer.SoundNetFeatures` and :class:`~soundnet_keras.transfer.ClipClassifier` pass
every other check of ``sklearn.utils.estimator_checks.check_estimator``. Tests run it with::

    check_estimator(estimator, expected_failed_checks=expected_failed_checks(estimator))

The checks feed tabular data, which our estimators read as it is: each row one mono clip of a few samples
(repeated to the 20-s training crop, as every short clip is). Two things about audio differ from tables:

* :data:`ANY_LENGTH` -- clips have any length, so the number of "features" (samples per clip) seen at ``fit`` says
  nothing about later input; there is no ``n_features_in_`` and a different length is not an error;
* :data:`SAMPLE_RANGE` -- float samples live in [-1, 1]; a float waveform peaking far above (as the checks' blobs
  and ``loc=100`` data do) is almost always integer audio cast to float without scaling, and is refused with an
  :class:`~soundnet_keras.errors.AudioError` that says so, rather than heard at 100x the level. The test suite runs
  these checks once more on a subclass that divides array input by 1,000 first, so what they test (fit returns
  self, idempotence, read-only input, ``__sklearn_is_fitted__``...) is still tested.
"""

from __future__ import annotations

from typing import Any

ANY_LENGTH = {
    "check_n_features_in": "clips have any length: there is no fixed number of input samples (n_features_in_)",
    "check_n_features_in_after_fitting": "clips have any length: there is no n_features_in_ to check",
    "check_transformer_general": "a clip of another length than the training clips is valid input, not an error",
    "check_classifiers_train": "a clip of another length than the training clips is valid input, not an error",
}

SAMPLE_RANGE_REASON = "float samples must be in [-1, 1]; the check's data peaks at 3 to 100 and is refused"
SAMPLE_RANGE = dict.fromkeys(
    (
        "check_estimators_overwrite_params",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_positive_only_tag_during_fit",
        "check_non_transformer_estimators_n_iter",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_requires_y_none",
    ),
    SAMPLE_RANGE_REASON,
)


def expected_failed_checks(estimator: Any, *, samples_in_range: bool = False) -> dict[str, str]:
    """Check name -> reason for the ``check_estimator`` checks that do not apply to ``estimator`` (audio input);
    ``samples_in_range=True`` for a test double that scales the checks' data into [-1, 1] first."""
    expected = dict(ANY_LENGTH)
    if not samples_in_range:
        expected.update({name: reason for name, reason in SAMPLE_RANGE.items() if name not in expected})
    return expected

"""Linear heads on feature rows: liblinear-style SVM, logistic regression, and a Keras single-layer perceptron.

Every head is stored as one :class:`LinearHead` (weights, bias, optional standardisation), whatever trained it, so a
saved head needs neither scikit-learn's pickles nor Keras to score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

HEADS = ("svm", "logistic", "perceptron")
DEFAULT_C = {"svm": 0.01, "logistic": 1.0, "perceptron": 1.0}
DEFAULT_TOL = {"svm": 0.1, "logistic": 1e-4, "perceptron": 0.0}
"""liblinear's default stopping tolerance for ``-s 1`` is 0.1; sklearn's LinearSVC default (1e-4) is stricter."""


@dataclass
class LinearHead:
    """A fitted linear head as plain arrays: ``scores = ((x - mean) / scale) @ weights.T + bias``, one per class."""

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    n_iter: int = 0
    """Iterations (svm, logistic) or epochs (perceptron) the solver ran; 0 when unknown (a loaded head)."""

    def __post_init__(self) -> None:
        # C-contiguous float64 always, so a saved and re-loaded head computes bit-identical scores
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.bias = np.ascontiguousarray(self.bias, dtype=np.float64)
        if self.mean is not None and self.scale is not None:
            self.mean = np.ascontiguousarray(self.mean, dtype=np.float64)
            self.scale = np.ascontiguousarray(self.scale, dtype=np.float64)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Decision values (SVM) or logits (logistic, perceptron) of rows ``x``: (n, classes) float64."""
        x = np.asarray(x, np.float64)
        if self.mean is not None and self.scale is not None:
            x = (x - self.mean) / self.scale
        return x @ self.weights.T + self.bias


def _linear_from_sklearn(coef: np.ndarray, intercept: np.ndarray, n_classes: int, symmetric: bool) -> tuple:
    coef = np.asarray(coef, np.float64)
    intercept = np.asarray(intercept, np.float64).reshape(-1)
    if n_classes == 2 and coef.shape[0] == 1:
        if symmetric:  # SVM: class 1 scores +s, class 0 scores -s
            return np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
        return np.concatenate([np.zeros_like(coef), coef]), np.concatenate([np.zeros_like(intercept), intercept])
    return coef, intercept


def fit_head(
    head: str,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    C: float,
    standardize: bool = False,
    tol: float | None = None,
    max_iter: int = 1000,
    epochs: int = 100,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
    seed: int = 0,
) -> LinearHead:
    """Fit one head on rows ``x`` (n, dims) with integer labels ``y`` in ``range(n_classes)``.

    ``svm``: scikit-learn ``LinearSVC`` (liblinear ``-s 1``: L2-regularised squared hinge, dual, one-vs-rest) with
    ``intercept_scaling=1``, i.e. liblinear ``-B 1`` -- the bias is an extra constant feature and is regularised like
    the weights, as in the original. ``logistic``: multinomial logistic regression (lbfgs). ``perceptron``: one Keras
    softmax layer trained with Adam on the cross-entropy plus an L2 penalty equal to the logistic objective's
    (``||W||^2 / (2 C n)``), ``epochs`` passes.
    """
    x = np.asarray(x, np.float64)
    mean = scale = None
    if standardize:
        from sklearn.preprocessing import StandardScaler  # sklearn estimators: ~0.1 s to import; only to fit a head

        scaler = StandardScaler().fit(x)  # constant columns get scale 1
        mean, scale, x = scaler.mean_, scaler.scale_, scaler.transform(x)
    tol = DEFAULT_TOL[head] if tol is None else tol
    if head == "svm":
        from sklearn.svm import LinearSVC

        model = LinearSVC(
            C=C,
            loss="squared_hinge",
            penalty="l2",
            dual=True,
            tol=tol,
            fit_intercept=True,
            intercept_scaling=1.0,
            max_iter=max_iter,
            random_state=seed,
        )
        model.fit(x, y)
        weights, bias = _linear_from_sklearn(model.coef_, model.intercept_, n_classes, symmetric=True)
        n_iter = int(np.max(model.n_iter_))
    elif head == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, tol=tol, max_iter=max_iter, random_state=seed)
        model.fit(x, y)
        weights, bias = _linear_from_sklearn(model.coef_, model.intercept_, n_classes, symmetric=False)
        n_iter = int(np.max(model.n_iter_))
    elif head == "perceptron":
        weights, bias = _fit_perceptron(x, y, n_classes, C, epochs, batch_size, learning_rate, seed)
        n_iter = epochs
    else:
        raise ConfigError(f"head must be one of {', '.join(map(repr, HEADS))}, got {head!r}")
    return LinearHead(np.asarray(weights, np.float64), np.asarray(bias, np.float64), mean, scale, n_iter)


def _fit_perceptron(
    x: np.ndarray, y: np.ndarray, n_classes: int, C: float, epochs: int, batch_size: int, lr: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    import keras  # heavy (Keras/TensorFlow): only for the perceptron head

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],), name="features")
    penalty = keras.regularizers.L2(1.0 / (2 * C * len(x)))
    dense = keras.layers.Dense(n_classes, activation="softmax", name="softmax", kernel_regularizer=penalty)
    model = keras.Model(inputs, dense(inputs), name="perceptron")
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y.astype(np.int32), epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    kernel, bias = dense.get_weights()
    return np.asarray(kernel, np.float64).T, np.asarray(bias, np.float64)


# ---------------------------------------------------------------------------------------------- clip classifier
@dataclass
class FitInfo:
    """What :meth:`ClipClassifier.fit` chose and saw (saved with the head)."""

    n_clips: int = 0
    n_windows: int = 0
    C: float = 0.0
    cv_accuracy: dict[str, float] = field(default_factory=dict)
    """Inner cross-validated clip accuracy per candidate C (only when ``C_grid`` was given)."""

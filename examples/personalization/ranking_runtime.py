"""An MLServer runtime that scores every candidate of a ranking request in one call.

MLServer's stock scikit-learn runtime takes one row per request row, but a ranking
request is a whole slate: 20 candidates x 8 features. This runtime accepts a batch of
slates, shape ``[requests, candidates, features]``, flattens it for the classifier's
``predict_proba`` and answers ``scores`` of shape ``[requests, candidates]`` (the
probability that the shopper clicks each candidate). So one event is one row for the
``kserve`` provider, and its batching, retries and dead letters work unchanged.

``train.py`` copies this file next to ``model.joblib``; MLServer imports it from the
model folder (``"implementation": "ranking_runtime.CandidateRanker"``). It runs in
MLServer's virtualenv, not the project's.
"""

from __future__ import annotations

import joblib  # type: ignore[import-not-found,unused-ignore]
from mlserver import MLModel  # type: ignore[import-not-found,unused-ignore]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found,unused-ignore]
from mlserver.errors import InferenceError  # type: ignore[import-not-found,unused-ignore]
from mlserver.types import (  # type: ignore[import-not-found,unused-ignore]
    InferenceRequest,
    InferenceResponse,
)
from mlserver.utils import get_model_uri  # type: ignore[import-not-found,unused-ignore]

__all__ = ["CandidateRanker"]


class CandidateRanker(MLModel):  # type: ignore[misc,unused-ignore]
    """Click probabilities for slates of candidates, from a scikit-learn classifier."""

    async def load(self) -> bool:
        self._model = joblib.load(await get_model_uri(self._settings))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if len(payload.inputs) != 1:
            raise InferenceError("send one input tensor: [requests, candidates, features]")
        slates = NumpyCodec.decode_input(payload.inputs[0])
        if slates.ndim != 3:
            raise InferenceError(
                f"input must have shape [requests, candidates, features], got {list(slates.shape)}"
            )
        n, k, f = slates.shape
        scores = self._model.predict_proba(slates.reshape(n * k, f))[:, 1].reshape(n, k)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output("scores", scores)],
        )

"""``ovms``: OpenVINO Model Server (see :mod:`..providers.ovms`).

Key (optional, for a server started with one): ``metadata["ovms_api_key"]``
or ``OVMS_API_KEY``, sent as ``Authorization: Bearer``.  Base URL:
``metadata["ovms_api_base"]`` (or ``ovms_url``, the original's
``ovms_api_url``) or ``OVMS_BASE_URL`` (``OVMS_API_URL``); default
``http://localhost:9000``.

``infer`` speaks KServe v2 and takes either KServe tensors or the friendly
form ``{"input_name": nested list | scalar | numpy array}`` (shape and
datatype are worked out; data is sent flat, row-major).  ``predict`` speaks
TF-Serving.  ``chat``, ``completions`` and ``embeddings`` go to the OpenAI
endpoints under ``/v3``.
"""

from __future__ import annotations

from typing import Any

from ..providers.ovms import OVMS, OVMSWire
from .base import BaseApiBackend

__all__ = ["ovms"]


class ovms(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = OVMSWire(OVMS)

    def infer(
        self,
        model: str,
        inputs: Any,
        outputs: Any = None,
        version: Any = None,
        *,
        parameters: dict[str, Any] | None = None,
        priority: int | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """KServe v2 ``POST /v2/models/{model}[/versions/{version}]/infer``.

        ``inputs``: ``{"name": value}`` (value: nested list, scalar, numpy
        array, or ``{"data", "shape"?, "datatype"?}``) or a list of KServe
        tensors.  ``outputs``: output names to return (all when None).
        Returns the server's response, ``{"model_name", "outputs": [...]}``;
        ``client.provider.outputs_from(result)`` gives ``{name: nested list}``.
        """
        endpoint, data = self.provider.infer_request(model, inputs, outputs, version, parameters)
        return self._call_json(endpoint, data, priority=priority, request_id=request_id)

    def predict(
        self,
        model: str,
        instances: Any,
        version: Any = None,
        *,
        signature_name: str | None = None,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """TF-Serving ``POST /v1/models/{model}[/versions/{version}]:predict``:
        a list goes as ``instances`` (answer: ``predictions``), a dict as
        columnar ``inputs`` (answer: ``outputs``)."""
        endpoint, data = self.provider.predict_request(model, instances, version, signature_name)
        return self._call_json(endpoint, data, priority=priority)

    def model_metadata(
        self, model: str, version: Any = None, *, priority: int | None = None
    ) -> dict[str, Any]:
        """KServe ``GET /v2/models/{model}[/versions/{version}]``: name, versions, inputs, outputs."""
        endpoint, data = self.provider.metadata_request(model, version)
        return self._call_json(endpoint, data, priority=priority)

    def model_ready(self, model: str, version: Any = None, *, priority: int | None = None) -> bool:
        """KServe ``GET /v2/models/{model}[/versions/{version}]/ready``: True
        when the server answers 200; False when it answers 503 (loading), 404
        (no such model or version) or 400.  "Not ready" is an answer: one
        request, no retry, nothing counted against the breaker.  Other
        failures raise as usual."""
        endpoint, data = self.provider.ready_request(model, version)
        return bool(self._call(endpoint, data, priority=priority)["ready"])

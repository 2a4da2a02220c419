"""The fake endpoint's Open Inference Protocol over gRPC (``ModelInfer``, ``ModelReady``).

Same test double, same answers (:func:`protocols.oip_infer`), same latency,
slow fraction and counters as its REST routes, on a gRPC port of its own:
what ``benchmarks/wire.py`` needs to compare wire formats on a server that
costs nothing. The messages are the protocol's (the library's generated
``oip_v2_pb2``: the schema, not the client's code); raw tensors are read and
written with this package's own functions, so a mistake in the client's
codec still shows. Needs ``grpcio`` (the ``grpc`` extra).
"""

from __future__ import annotations

import asyncio
from typing import Any

from devtools.fake_endpoint import protocols
from devtools.fake_endpoint.server import FakeEndpoint

__all__ = ["start_grpc"]

_ROUTE = "grpc:ModelInfer"


async def start_grpc(endpoint: FakeEndpoint, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Serve ``ModelInfer`` for ``endpoint`` on ``host:port``; returns ``(server, port)``."""
    import grpc

    from faust_inference.providers import oip_v2_pb2 as pb2
    from faust_inference.providers.oip_grpc import INFER_METHOD, READY_METHOD

    async def infer(request: Any, context: Any) -> Any:
        counters, cfg = endpoint._counters, endpoint.config
        counters.begin(_ROUTE)
        try:
            delay = cfg.latency
            if cfg.slow_rate and endpoint._slow_rng.random() < cfg.slow_rate:
                counters.faults["slow"] += 1
                delay = cfg.slow_latency
            if delay > 0:
                await asyncio.sleep(delay)
            raw = request.raw_input_contents
            inputs = [
                {
                    "name": t.name,
                    "datatype": t.datatype,
                    "shape": list(t.shape),
                    "data": protocols._raw_values(t.datatype, raw[i]),
                }
                for i, t in enumerate(request.inputs)
            ]
            try:
                reply = protocols.oip_infer(
                    {"inputs": inputs}, request.model_name, request.model_version or None, cfg, 0
                )
            except protocols.BadRequestError as exc:
                counters.by_status[400] += 1
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            counters.rows += reply.rows
            counters.by_status[200] += 1
            payload = reply.payload
            response = pb2.ModelInferResponse(
                model_name=payload["model_name"], model_version=payload["model_version"]
            )
            for output in payload["outputs"]:
                response.outputs.add(
                    name=output["name"], datatype=output["datatype"], shape=output["shape"]
                )
                response.raw_output_contents.append(
                    protocols._raw_bytes(output["datatype"], output["data"])
                )
            return response
        finally:
            counters.in_flight -= 1

    async def ready(request: Any, context: Any) -> Any:
        return pb2.ModelReadyResponse(ready=True)  # every model is, as on the REST route

    service, _, method = INFER_METHOD.strip("/").partition("/")
    handler = grpc.method_handlers_generic_handler(
        service,
        {
            method: grpc.unary_unary_rpc_method_handler(
                infer,
                request_deserializer=pb2.ModelInferRequest.FromString,
                response_serializer=pb2.ModelInferResponse.SerializeToString,
            ),
            READY_METHOD.rpartition("/")[2]: grpc.unary_unary_rpc_method_handler(
                ready,
                request_deserializer=pb2.ModelReadyRequest.FromString,
                response_serializer=pb2.ModelReadyResponse.SerializeToString,
            ),
        },
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound

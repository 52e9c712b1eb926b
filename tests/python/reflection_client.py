"""A gRPC client that knows nothing of nodemedic's protos: it learns every service and
message from the collector's server reflection (grpc.reflection.v1alpha, the version
Python's grpcio-reflection speaks), as tooling such as Postman or Evans does.

    python3 reflection_client.py HOST:PORT NODE

Lists the services, checks grpc.health.v1 for the collector's two services, calls
nodemedic.v1.Diagnostics ListNodes and GetNode(NODE), and prints what it found as one JSON
object. Exits non-zero, saying why, when a step fails.
"""

import json
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main(target, node):
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = DescriptorPool(database)

    def call(service, method, request):
        """Calls SERVICE/METHOD with REQUEST (a dict in proto3 JSON), types from reflection."""
        descriptor = pool.FindServiceByName(service).FindMethodByName(method)
        request_type = message_factory.GetMessageClass(descriptor.input_type)
        response_type = message_factory.GetMessageClass(descriptor.output_type)
        rpc = channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        answer = rpc(json_format.ParseDict(request, request_type()), timeout=10)
        return json_format.MessageToDict(answer)

    services = sorted(database.get_services())
    health = {
        name: call("grpc.health.v1.Health", "Check", {"service": name})["status"]
        for name in ["", "nodemedic.v1.AgentGateway", "nodemedic.v1.Diagnostics"]
    }
    nodes = call("nodemedic.v1.Diagnostics", "ListNodes", {})
    detail = call("nodemedic.v1.Diagnostics", "GetNode", {"name": node})
    json.dump(
        {"services": services, "health": health, "nodes": nodes, "node": detail},
        sys.stdout,
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

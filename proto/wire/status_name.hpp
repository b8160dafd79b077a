#pragma once
// The canonical names of gRPC status codes ("NOT_FOUND"), for logs, metrics labels and messages, shared by
// the server and the clients.
#include <grpcpp/support/status.h>

namespace ntkwire {

const char* status_code_name(grpc::StatusCode code) noexcept;

}  // namespace ntkwire

#pragma once
// The one place where errors become gRPC status codes (Triton-style): every handler's exceptions
// pass through to_status().
#include <grpcpp/support/status.h>

#include <exception>

#include "ntk/errors.hpp"
#include "wire/status_name.hpp"

namespace ntkserver {

grpc::StatusCode status_code_for(ntk::ErrorCode code) noexcept;

// The status for the exception being handled (call from a catch block, or pass one). ntk errors keep
// their message; std::bad_alloc is RESOURCE_EXHAUSTED; anything else is INTERNAL (a real fault).
grpc::Status to_status(std::exception_ptr error) noexcept;

using ntkwire::status_code_name;

}  // namespace ntkserver

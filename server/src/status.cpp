#include "status.hpp"

#include <new>
#include <string>

namespace ntkserver {

grpc::StatusCode status_code_for(ntk::ErrorCode code) noexcept {
  switch (code) {
    case ntk::ErrorCode::invalid_argument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ntk::ErrorCode::not_found:
      return grpc::StatusCode::NOT_FOUND;
    case ntk::ErrorCode::already_exists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case ntk::ErrorCode::failed_precondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ntk::ErrorCode::resource_exhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    // A kernel that is not positive definite or a solver that cannot proceed is a property of the
    // request's data and settings (the message says what to change), not a server fault.
    case ntk::ErrorCode::numerical:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ntk::ErrorCode::io:
      return grpc::StatusCode::INTERNAL;
    case ntk::ErrorCode::unavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case ntk::ErrorCode::cancelled:
      return grpc::StatusCode::CANCELLED;
    case ntk::ErrorCode::deadline_exceeded:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case ntk::ErrorCode::internal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

grpc::Status to_status(std::exception_ptr error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const ntk::Error& e) {
    return {status_code_for(e.code()), e.what()};
  } catch (const std::bad_alloc&) {
    return {grpc::StatusCode::RESOURCE_EXHAUSTED, "out of host memory"};
  } catch (const std::exception& e) {
    return {grpc::StatusCode::INTERNAL, std::string("internal error: ") + e.what()};
  } catch (...) {
    return {grpc::StatusCode::INTERNAL, "internal error: unknown exception"};
  }
}

}  // namespace ntkserver

#pragma once
#include <stdexcept>
#include <string>

namespace ntk {

// The error categories a caller can act on. The server maps each to one gRPC status code in one place.
enum class ErrorCode {
  invalid_argument,     // bad shapes, dtypes, NaN/Inf, unknown names, out-of-range parameters
  not_found,            // a file, dataset or model that does not exist
  already_exists,       // a name that is taken
  failed_precondition,  // a valid request the current state refuses (e.g. one-hot targets with lambda = 0)
  resource_exhausted,   // memory budget or queue capacity
  numerical,            // a matrix that is not positive definite, a solver that did not converge
  io,                   // reading or writing a file failed
  unavailable,          // a backend or device that is not present
  cancelled,
  deadline_exceeded,
  internal,  // a real fault: a bug or an unexpected library error
};

const char* error_code_name(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

#define NTK_DEFINE_ERROR(Name, code_value)                                               \
  class Name : public Error {                                                            \
   public:                                                                               \
    explicit Name(const std::string& message) : Error(ErrorCode::code_value, message) {} \
  };

NTK_DEFINE_ERROR(InvalidArgument, invalid_argument)
NTK_DEFINE_ERROR(NotFound, not_found)
NTK_DEFINE_ERROR(AlreadyExists, already_exists)
NTK_DEFINE_ERROR(FailedPrecondition, failed_precondition)
NTK_DEFINE_ERROR(ResourceExhausted, resource_exhausted)
NTK_DEFINE_ERROR(NumericalError, numerical)
NTK_DEFINE_ERROR(IoError, io)
NTK_DEFINE_ERROR(Unavailable, unavailable)
NTK_DEFINE_ERROR(Cancelled, cancelled)
NTK_DEFINE_ERROR(DeadlineExceeded, deadline_exceeded)
NTK_DEFINE_ERROR(InternalError, internal)
#undef NTK_DEFINE_ERROR

}  // namespace ntk

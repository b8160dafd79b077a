#pragma once
#include <memory>
#include <mutex>

#include "ntk/backend.hpp"
#include "ntk/cuda/resources.cuh"

namespace ntk::cuda {

// Backend::make_kernel_product of the CUDA backend (kernel_product.cu): x_train and b are copied to the
// device (operands checked by the caller); apply() runs under `device_mutex`.
std::unique_ptr<KernelProduct> make_device_kernel_product(DeviceResources& resources,
                                                          std::mutex& device_mutex, const KernelSpec& spec,
                                                          bool float32, ConstMatrixView<double> x_train,
                                                          ConstMatrixView<double> b);

}  // namespace ntk::cuda

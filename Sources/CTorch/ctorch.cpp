// Implementation of ctorch.h. Only ATen headers (twice as fast to compile as torch/torch.h).
// Every entry point is wrapped in CK_BEGIN/CK_END so that no C++ exception reaches Swift.
#include <malloc.h>
#include <climits>
#include <cmath>
#include "shim.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/DeviceAccelerator.h>
#include <c10/core/GradMode.h>
#include <dlfcn.h>
#include <torch/headeronly/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <mutex>
#include <vector>

struct ck_generator_s { at::Generator g; };

using namespace ck;

namespace {


at::ScalarType dtype(int code) {
  switch (code) {
    case CK_F32: return at::kFloat;
    case CK_F16: return at::kHalf;
    case CK_BF16: return at::kBFloat16;
    case CK_F64: return at::kDouble;
    case CK_I64: return at::kLong;
    case CK_I32: return at::kInt;
    case CK_U8: return at::kByte;
    case CK_BOOL: return at::kBool;
    case CK_I8: return at::kChar;
    case CK_I16: return at::kShort;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(code));
}
int dtype_code(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return CK_F32;
    case at::kHalf: return CK_F16;
    case at::kBFloat16: return CK_BF16;
    case at::kDouble: return CK_F64;
    case at::kLong: return CK_I64;
    case at::kInt: return CK_I32;
    case at::kByte: return CK_U8;
    case at::kBool: return CK_BOOL;
    case at::kChar: return CK_I8;
    case at::kShort: return CK_I16;
    default: return -1;
  }
}
at::Device device(int type, int index) {
  if (type == CK_CPU) return at::Device(at::kCPU);
  if (type == CK_META) return at::Device(at::kMeta);
  if (type == CK_CUDA) {
    if (index < 0) throw std::invalid_argument("negative CUDA device index");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw std::invalid_argument("unknown device type code " + std::to_string(type));
}
at::DeviceType device_type(int type) { return device(type, 0).type(); }

at::IntArrayRef ints(const int64_t *p, int64_t n) {
  if (n < 0 || (n > 0 && !p)) throw std::invalid_argument("bad integer list");
  return at::IntArrayRef(p, static_cast<size_t>(n));
}
at::TensorOptions options(int dt, int dev_type, int dev_index) {
  return at::TensorOptions().dtype(dtype(dt)).device(device(dev_type, dev_index));
}
c10::optional<at::Generator> gen(ck_generator g) {
  if (!g) return c10::nullopt;
  return g->g;
}
void check_shape(const int64_t *shape, int64_t ndim) {
  for (int64_t i = 0; i < ndim; i++)
    if (shape[i] < 0) throw std::invalid_argument("negative dimension " + std::to_string(shape[i]));
}

}  // namespace

namespace {
// The few driver-API entry points used, resolved once from libcuda.so.1 (the host's driver).
struct Driver {
  int (*init)(unsigned) = nullptr;
  int (*count)(int *) = nullptr;
  int (*get)(int *, int) = nullptr;
  int (*name)(char *, int, int) = nullptr;
  int (*mem)(size_t *, int) = nullptr;
  int (*attr)(int *, int, int) = nullptr;
  std::string error;
};
const Driver &driver() {
  static const Driver d = [] {
    Driver r;
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) { const char *e = dlerror(); r.error = e ? e : "libcuda.so.1 not found"; return r; }
    r.init = reinterpret_cast<int (*)(unsigned)>(dlsym(h, "cuInit"));
    r.count = reinterpret_cast<int (*)(int *)>(dlsym(h, "cuDeviceGetCount"));
    r.get = reinterpret_cast<int (*)(int *, int)>(dlsym(h, "cuDeviceGet"));
    r.name = reinterpret_cast<int (*)(char *, int, int)>(dlsym(h, "cuDeviceGetName"));
    r.mem = reinterpret_cast<int (*)(size_t *, int)>(dlsym(h, "cuDeviceTotalMem_v2"));
    r.attr = reinterpret_cast<int (*)(int *, int, int)>(dlsym(h, "cuDeviceGetAttribute"));
    if (!r.init || !r.count || !r.get || !r.name || !r.mem || !r.attr) { r.error = "libcuda.so.1 lacks the driver API"; r.init = nullptr; return r; }
    int rc = r.init(0);
    if (rc != 0) { r.error = "cuInit failed with CUDA driver error " + std::to_string(rc); r.init = nullptr; }
    return r;
  }();
  return d;
}
}  // namespace

extern "C" {

void ck_free(void *p) { std::free(p); }
void ck_tensor_free(ck_tensor t) { delete t; }

const char *ck_torch_version(void) { return TORCH_VERSION; }

ck_error ck_load_library(const char *path) {
  CK_BEGIN
  if (!path) throw std::invalid_argument("null path");
  if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL)) {
    const char *e = dlerror();
    throw std::runtime_error(e ? e : "dlopen failed");
  }
  CK_END
}

int ck_cuda_available(void) {
  try { return at::hasCUDA() ? 1 : 0; } catch (...) { return 0; }
}
int ck_cuda_device_count(void) {
  try {
    if (!at::hasCUDA()) return 0;
    return static_cast<int>(at::detail::getCUDAHooks().deviceCount());
  } catch (...) { return 0; }
}
void ck_set_num_threads(int n) {
  try { if (n > 0) at::set_num_threads(n); } catch (...) {}
}
void ck_keep_freed_memory(void) {
  // Tensors of a training step are freed and allocated again at the same sizes every step. By
  // default glibc serves big ones with mmap and returns them on free, so every step pays page
  // faults and kernel page zeroing (~12 % of a CPU step); from the heap, without trimming, the
  // memory is reused instead.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}
int ck_get_num_threads(void) {
  try { return at::get_num_threads(); } catch (...) { return 1; }
}
ck_error ck_manual_seed(uint64_t seed, int all_devices) {
  CK_BEGIN
  if (all_devices) {
    at::manual_seed(seed);
  } else {
    auto g = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  CK_END
}
ck_error ck_set_device(int index) {
  CK_BEGIN
  at::accelerator::setDeviceIndex(static_cast<c10::DeviceIndex>(index));
  CK_END
}
ck_error ck_zeros_like(ck_tensor h, ck_tensor *out) {
  CK_BEGIN
  put(out, at::zeros_like(T(h)));
  CK_END
}
ck_error ck_set_deterministic(int on, int warn_only) {
  CK_BEGIN
  at::globalContext().setDeterministicAlgorithms(on != 0, warn_only != 0);
  CK_END
}
ck_error ck_set_cudnn_benchmark(int on) {
  CK_BEGIN
  at::globalContext().setBenchmarkCuDNN(on != 0);
  CK_END
}
int ck_deterministic(void) {
  auto &c = at::globalContext();
  return !c.deterministicAlgorithms() ? 0 : c.deterministicAlgorithmsWarnOnly() ? 2 : 1;
}
int ck_cudnn_benchmark(void) { return at::globalContext().benchmarkCuDNN() ? 1 : 0; }
ck_error ck_cuda_synchronize(int device_index) {
  CK_BEGIN
  if (!at::hasCUDA()) throw std::runtime_error("CUDA is not available");
  at::detail::getCUDAHooks().deviceSynchronize(static_cast<c10::DeviceIndex>(device_index));
  CK_END
}

char *ck_torch_library_dir(void) {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void *>(&at::get_num_threads), &info) || !info.dli_fname) return nullptr;
  std::string path(info.dli_fname);
  auto slash = path.rfind('/');
  return message(slash == std::string::npos ? "." : path.substr(0, slash).c_str());
}


ck_error ck_driver_device_count(int *count) {
  CK_BEGIN
  const Driver &d = driver();
  if (!d.init) throw std::runtime_error(d.error);
  int n = 0;
  int rc = d.count(&n);
  if (rc != 0) throw std::runtime_error("cuDeviceGetCount failed with CUDA driver error " + std::to_string(rc));
  *count = n;
  CK_END
}
ck_error ck_driver_device(int index, char *name, int name_len, size_t *total_memory, int *major, int *minor) {
  CK_BEGIN
  const Driver &d = driver();
  if (!d.init) throw std::runtime_error(d.error);
  int dev = 0;
  if (d.get(&dev, index) != 0) throw std::runtime_error("no CUDA device " + std::to_string(index));
  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76.
  if (d.name(name, name_len, dev) != 0 || d.mem(total_memory, dev) != 0 || d.attr(major, 75, dev) != 0 ||
      d.attr(minor, 76, dev) != 0)
    throw std::runtime_error("cannot query CUDA device " + std::to_string(index));
  CK_END
}
ck_error ck_cuda_memory(int device_index, int64_t *allocated, int64_t *peak_allocated, int64_t *reserved,
                        int64_t *peak_reserved) {
  CK_BEGIN
  auto s = at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(device_index));
  constexpr size_t all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  *allocated = s.allocated_bytes[all].current;
  *peak_allocated = s.allocated_bytes[all].peak;
  *reserved = s.reserved_bytes[all].current;
  *peak_reserved = s.reserved_bytes[all].peak;
  CK_END
}
ck_error ck_cuda_reset_peak(int device_index) {
  CK_BEGIN
  at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
  CK_END
}
ck_error ck_set_tf32(int matmul, int cudnn) {
  CK_BEGIN
  at::globalContext().setAllowTF32CuBLAS(matmul != 0);
  at::globalContext().setAllowTF32CuDNN(cudnn != 0);
  CK_END
}
ck_error ck_set_sdp_backends(int flash, int mem_efficient, int cudnn, int math) {
  CK_BEGIN
  auto &c = at::globalContext();
  c.setSDPUseFlash(flash != 0);
  c.setSDPUseMemEfficient(mem_efficient != 0);
  c.setSDPUseCuDNN(cudnn != 0);
  c.setSDPUseMath(math != 0);
  CK_END
}
ck_error ck_sdp_choice(ck_tensor q, ck_tensor k, ck_tensor v, int is_causal, int64_t *backend) {
  CK_BEGIN
  *backend = at::_fused_sdp_choice(T(q), T(k), T(v), c10::nullopt, 0.0, is_causal != 0);
  CK_END
}
ck_error ck_pin_memory(ck_tensor h, ck_tensor *out) {
  CK_BEGIN
  put(out, T(h).pin_memory());
  CK_END
}
ck_error ck_empty_pinned(const int64_t *shape, int64_t ndim, int dt, ck_tensor *out) {
  CK_BEGIN
  check_shape(shape, ndim);
  put(out, at::empty(ints(shape, ndim), at::TensorOptions().dtype(dtype(dt)).pinned_memory(true)));
  CK_END
}
ck_error ck_write_bytes(ck_tensor h, size_t offset, const void *src, size_t nbytes) {
  CK_BEGIN
  const at::Tensor &t = T(h);
  if (!t.device().is_cpu() || !t.is_contiguous()) throw std::invalid_argument("write_bytes needs a contiguous CPU tensor");
  size_t size = static_cast<size_t>(t.numel()) * t.element_size();
  if (offset > size || nbytes > size - offset)
    throw std::invalid_argument("write of " + std::to_string(nbytes) + " bytes at " + std::to_string(offset) +
                                " exceeds the tensor's " + std::to_string(size) + " bytes");
  if (nbytes) {
    if (!src) throw std::invalid_argument("null source");
    std::memcpy(static_cast<char *>(t.data_ptr()) + offset, src, nbytes);
  }
  CK_END
}
ck_error ck_fused_adamw(const ck_tensor *params, const ck_tensor *grads, const ck_tensor *exp_avgs,
                        const ck_tensor *exp_avg_sqs, const ck_tensor *steps, int64_t n, double lr, double beta1,
                        double beta2, double weight_decay, double eps) {
  CK_BEGIN
  std::vector<at::Tensor> p, g, m, v, st;
  for (int64_t i = 0; i < n; i++) {
    p.push_back(T(params[i]));
    g.push_back(T(grads[i]));
    m.push_back(T(exp_avgs[i]));
    v.push_back(T(exp_avg_sqs[i]));
    st.push_back(T(steps[i]));
  }
  at::_fused_adamw_(p, g, m, v, {}, st, lr, beta1, beta2, weight_decay, eps, false, false);
  CK_END
}
ck_error ck_amp_unscale(const ck_tensor *grads, int64_t n, ck_tensor found_inf, ck_tensor inv_scale) {
  CK_BEGIN
  std::vector<at::Tensor> gs;
  for (int64_t i = 0; i < n; i++) gs.push_back(T(grads[i]));
  at::Tensor f = T(found_inf);
  at::_amp_foreach_non_finite_check_and_unscale_(gs, f, T(inv_scale));
  CK_END
}
ck_error ck_amp_update_scale(ck_tensor scale, ck_tensor growth_tracker, ck_tensor found_inf, double growth,
                             double backoff, int64_t interval) {
  CK_BEGIN
  at::Tensor s = T(scale), g = T(growth_tracker);
  at::_amp_update_scale_(s, g, T(found_inf), growth, backoff, interval);
  CK_END
}

int ck_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }
void ck_set_grad_enabled(int enabled) { c10::GradMode::set_enabled(enabled != 0); }

ck_error ck_autocast_set(int dev_type, int enabled, int dt) {
  CK_BEGIN
  auto d = device_type(dev_type);
  if (enabled) {
    auto s = dtype(dt);
    if (s != at::kHalf && s != at::kBFloat16)
      throw std::invalid_argument("autocast dtype must be float16 or bfloat16");
    at::autocast::set_autocast_dtype(d, s);
  }
  at::autocast::set_autocast_enabled(d, enabled != 0);
  CK_END
}
int ck_autocast_enabled(int dev_type) {
  try { return at::autocast::is_autocast_enabled(device_type(dev_type)) ? 1 : 0; } catch (...) { return 0; }
}
int ck_autocast_dtype(int dev_type) {
  try { return dtype_code(at::autocast::get_autocast_dtype(device_type(dev_type))); } catch (...) { return -1; }
}
void ck_autocast_enter(void) { at::autocast::increment_nesting(); }
void ck_autocast_exit(void) {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

int ck_tensor_defined(ck_tensor t) { return t && t->t.defined() ? 1 : 0; }
int64_t ck_tensor_dim(ck_tensor t) { return ck_tensor_defined(t) ? t->t.dim() : 0; }
void ck_tensor_sizes(ck_tensor t, int64_t *out) {
  if (!ck_tensor_defined(t)) return;
  auto s = t->t.sizes();
  for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
}
void ck_tensor_strides(ck_tensor t, int64_t *out) {
  if (!ck_tensor_defined(t)) return;
  auto s = t->t.strides();
  for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
}
int64_t ck_tensor_numel(ck_tensor t) { return ck_tensor_defined(t) ? t->t.numel() : 0; }
int ck_tensor_dtype(ck_tensor t) { return ck_tensor_defined(t) ? dtype_code(t->t.scalar_type()) : -1; }
int ck_tensor_device_type(ck_tensor t) {
  if (!ck_tensor_defined(t)) return -1;
  auto d = t->t.device();
  return d.is_cpu() ? CK_CPU : d.is_cuda() ? CK_CUDA : d.is_meta() ? CK_META : -1;
}
int ck_tensor_device_index(ck_tensor t) {
  if (!ck_tensor_defined(t)) return -1;
  auto d = t->t.device();
  return d.has_index() ? d.index() : 0;
}
int ck_tensor_requires_grad(ck_tensor t) { return ck_tensor_defined(t) && t->t.requires_grad() ? 1 : 0; }
int ck_tensor_is_contiguous(ck_tensor t) { return ck_tensor_defined(t) && t->t.is_contiguous() ? 1 : 0; }
const void *ck_tensor_data_ptr(ck_tensor t) {
  if (!ck_tensor_defined(t) || !t->t.device().is_cpu() || !t->t.is_contiguous()) return nullptr;
  try { return t->t.data_ptr(); } catch (...) { return nullptr; }
}

ck_error ck_from_data(const void *data, size_t nbytes, const int64_t *shape, int64_t ndim, int dt,
                      ck_tensor *out) {
  CK_BEGIN
  check_shape(shape, ndim);
  // The byte count is checked before anything is allocated (shapes come from files).
  int64_t elements = 1;
  for (int64_t i = 0; i < ndim; i++)
    if (shape[i] == 0) elements = 0;
  for (int64_t i = 0; i < ndim && elements != 0; i++)
    if (__builtin_mul_overflow(elements, shape[i], &elements))
      throw std::invalid_argument("shape overflows a 64-bit element count");
  size_t need = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(elements), c10::elementSize(dtype(dt)), &need))
    throw std::invalid_argument("shape overflows a 64-bit byte count");
  if (need != nbytes)
    throw std::invalid_argument("buffer holds " + std::to_string(nbytes) + " bytes, shape needs " +
                                std::to_string(need));
  auto t = at::empty(ints(shape, ndim), at::TensorOptions().dtype(dtype(dt)));
  if (need) {
    if (!data) throw std::invalid_argument("null data pointer");
    std::memcpy(t.data_ptr(), data, need);
  }
  put(out, t);
  CK_END
}
ck_error ck_full(const int64_t *shape, int64_t ndim, double value, int dt, int dev_type,
                 int dev_index, ck_tensor *out) {
  CK_BEGIN
  check_shape(shape, ndim);
  put(out, at::full(ints(shape, ndim), value, options(dt, dev_type, dev_index)));
  CK_END
}
ck_error ck_empty(const int64_t *shape, int64_t ndim, int dt, int dev_type, int dev_index,
                  ck_tensor *out) {
  CK_BEGIN
  check_shape(shape, ndim);
  put(out, at::empty(ints(shape, ndim), options(dt, dev_type, dev_index)));
  CK_END
}
ck_error ck_arange(double start, double end, double step, int dt, int dev_type, int dev_index,
                   ck_tensor *out) {
  CK_BEGIN
  put(out, at::arange(start, end, step, options(dt, dev_type, dev_index)));
  CK_END
}
ck_error ck_rand(int kind, const int64_t *shape, int64_t ndim, int dt, int dev_type, int dev_index,
                 ck_generator g, ck_tensor *out) {
  CK_BEGIN
  check_shape(shape, ndim);
  auto o = options(dt, dev_type, dev_index);
  if (kind == 0) put(out, at::rand(ints(shape, ndim), gen(g), o));
  else if (kind == 1) put(out, at::randn(ints(shape, ndim), gen(g), o));
  else throw std::invalid_argument("unknown random kind");
  CK_END
}
ck_error ck_randint(int64_t low, int64_t high, const int64_t *shape, int64_t ndim, int dev_type,
                    int dev_index, ck_generator g, ck_tensor *out) {
  CK_BEGIN
  check_shape(shape, ndim);
  put(out, at::randint(low, high, ints(shape, ndim), gen(g), options(CK_I64, dev_type, dev_index)));
  CK_END
}
ck_error ck_randperm(int64_t n, int dev_type, int dev_index, ck_generator g, ck_tensor *out) {
  CK_BEGIN
  put(out, at::randperm(n, gen(g), options(CK_I64, dev_type, dev_index)));
  CK_END
}
ck_error ck_copy_to_buffer(ck_tensor h, void *dst, size_t nbytes) {
  CK_BEGIN
  auto t = T(h).detach().to(at::kCPU).contiguous();
  size_t need = static_cast<size_t>(t.numel()) * t.element_size();
  if (need != nbytes)
    throw std::invalid_argument("destination holds " + std::to_string(nbytes) +
                                " bytes, tensor has " + std::to_string(need));
  if (need) {
    if (!dst) throw std::invalid_argument("null destination");
    std::memcpy(dst, t.data_ptr(), need);
  }
  CK_END
}
ck_error ck_to(ck_tensor h, int dt, int dev_type, int dev_index, int non_blocking, ck_tensor *out) {
  CK_BEGIN
  put(out, T(h).to(device(dev_type, dev_index), dtype(dt), non_blocking != 0));
  CK_END
}
ck_error ck_item_double(ck_tensor h, double *out) {
  CK_BEGIN
  *out = T(h).item<double>();
  CK_END
}
ck_error ck_shallow_copy(ck_tensor h, ck_tensor *out) {
  CK_BEGIN
  put(out, T(h));
  CK_END
}

ck_error ck_generator_new(uint64_t seed, ck_generator *out) {
  CK_BEGIN
  *out = new ck_generator_s{at::make_generator<at::CPUGeneratorImpl>(seed)};
  CK_END
}
void ck_generator_free(ck_generator g) { delete g; }
ck_error ck_generator_get_state(ck_generator g, ck_tensor *out) {
  CK_BEGIN
  if (!g) throw std::invalid_argument("null generator");
  std::lock_guard<std::mutex> lock(g->g.mutex());
  put(out, g->g.get_state());
  CK_END
}
ck_error ck_generator_set_state(ck_generator g, ck_tensor state) {
  CK_BEGIN
  if (!g) throw std::invalid_argument("null generator");
  std::lock_guard<std::mutex> lock(g->g.mutex());
  g->g.set_state(T(state));
  CK_END
}

ck_error ck_unary(int op, ck_tensor h, ck_tensor *out) {
  CK_BEGIN
  const auto &a = T(h);
  at::Tensor r;
  switch (op) {
    case CK_NEG: r = at::neg(a); break;
    case CK_EXP: r = at::exp(a); break;
    case CK_LOG: r = at::log(a); break;
    case CK_SQRT: r = at::sqrt(a); break;
    case CK_RSQRT: r = at::rsqrt(a); break;
    case CK_ABS: r = at::abs(a); break;
    case CK_SIGMOID: r = at::sigmoid(a); break;
    case CK_TANH: r = at::tanh(a); break;
    case CK_RELU: r = at::relu(a); break;
    case CK_GELU_ERF: r = at::gelu(a, "none"); break;
    case CK_GELU_TANH: r = at::gelu(a, "tanh"); break;
    case CK_LOG_SIGMOID: r = at::log_sigmoid(a); break;
    case CK_SIN: r = at::sin(a); break;
    case CK_COS: r = at::cos(a); break;
    case CK_FLOOR: r = at::floor(a); break;
    case CK_CEIL: r = at::ceil(a); break;
    case CK_ROUND: r = at::round(a); break;
    case CK_LOGICAL_NOT: r = at::logical_not(a); break;
    case CK_SIGN: r = at::sign(a); break;
    case CK_SQUARE: r = at::square(a); break;
    case CK_CONTIGUOUS: r = a.contiguous(); break;
    case CK_CLONE: r = a.clone(); break;
    case CK_DETACH: r = a.detach(); break;
    case CK_ERF: r = at::erf(a); break;
    case CK_LOG1P: r = at::log1p(a); break;
    case CK_RECIPROCAL: r = at::reciprocal(a); break;
    case CK_ISNAN: r = at::isnan(a); break;
    case CK_ISFINITE: r = at::isfinite(a); break;
    case CK_SILU: r = at::silu(a); break;
    default: throw std::invalid_argument("unknown unary op " + std::to_string(op));
  }
  put(out, r);
  CK_END
}

ck_error ck_binary(int op, ck_tensor ha, ck_tensor hb, ck_tensor *out) {
  CK_BEGIN
  const auto &a = T(ha);
  const auto &b = T(hb);
  at::Tensor r;
  switch (op) {
    case CK_ADD: r = at::add(a, b); break;
    case CK_SUB: r = at::sub(a, b); break;
    case CK_MUL: r = at::mul(a, b); break;
    case CK_DIV: r = at::div(a, b); break;
    case CK_POW: r = at::pow(a, b); break;
    case CK_MAXIMUM: r = at::maximum(a, b); break;
    case CK_MINIMUM: r = at::minimum(a, b); break;
    case CK_EQ: r = at::eq(a, b); break;
    case CK_NE: r = at::ne(a, b); break;
    case CK_LT: r = at::lt(a, b); break;
    case CK_LE: r = at::le(a, b); break;
    case CK_GT: r = at::gt(a, b); break;
    case CK_GE: r = at::ge(a, b); break;
    case CK_LOGICAL_AND: r = at::logical_and(a, b); break;
    case CK_LOGICAL_OR: r = at::logical_or(a, b); break;
    case CK_MATMUL: r = at::matmul(a, b); break;
    case CK_REMAINDER: r = at::remainder(a, b); break;
    case CK_ATAN2: r = at::atan2(a, b); break;
    case CK_FLOOR_DIVIDE: r = at::floor_divide(a, b); break;
    default: throw std::invalid_argument("unknown binary op " + std::to_string(op));
  }
  put(out, r);
  CK_END
}

ck_error ck_binary_scalar(int op, ck_tensor ha, double s, ck_tensor *out) {
  CK_BEGIN
  const auto &a = T(ha);
  at::Scalar v(s);
  at::Tensor r;
  switch (op) {
    case CK_ADD: r = at::add(a, v); break;
    case CK_SUB: r = at::sub(a, v); break;
    case CK_MUL: r = at::mul(a, v); break;
    case CK_DIV: r = at::div(a, v); break;
    case CK_POW: r = at::pow(a, v); break;
    case CK_MAXIMUM: r = at::clamp_min(a, v); break;
    case CK_MINIMUM: r = at::clamp_max(a, v); break;
    case CK_EQ: r = at::eq(a, v); break;
    case CK_NE: r = at::ne(a, v); break;
    case CK_LT: r = at::lt(a, v); break;
    case CK_LE: r = at::le(a, v); break;
    case CK_GT: r = at::gt(a, v); break;
    case CK_GE: r = at::ge(a, v); break;
    case CK_REMAINDER: r = at::remainder(a, v); break;
    case CK_FLOOR_DIVIDE: r = at::floor_divide(a, v); break;
    case CK_RSUB_SCALAR: r = at::rsub(a, v); break;
    default: throw std::invalid_argument("unknown scalar op " + std::to_string(op));
  }
  put(out, r);
  CK_END
}

ck_error ck_add_(ck_tensor self, ck_tensor other, double alpha) {
  CK_BEGIN
  T(self).add_(T(other), alpha);
  CK_END
}
ck_error ck_mul_scalar_(ck_tensor self, double s) {
  CK_BEGIN
  T(self).mul_(s);
  CK_END
}
ck_error ck_mul_(ck_tensor self, ck_tensor other) {
  CK_BEGIN
  T(self).mul_(T(other));
  CK_END
}
ck_error ck_addcmul_(ck_tensor self, ck_tensor t1, ck_tensor t2, double value) {
  CK_BEGIN
  T(self).addcmul_(T(t1), T(t2), value);
  CK_END
}
ck_error ck_addcdiv_(ck_tensor self, ck_tensor t1, ck_tensor t2, double value) {
  CK_BEGIN
  T(self).addcdiv_(T(t1), T(t2), value);
  CK_END
}
ck_error ck_lerp_(ck_tensor self, ck_tensor end, double weight) {
  CK_BEGIN
  T(self).lerp_(T(end), weight);
  CK_END
}
ck_error ck_copy_(ck_tensor self, ck_tensor src) {
  CK_BEGIN
  T(self).copy_(T(src));
  CK_END
}
ck_error ck_fill_(ck_tensor self, double value) {
  CK_BEGIN
  T(self).fill_(value);
  CK_END
}
ck_error ck_clamp_(ck_tensor self, int has_min, double mn, int has_max, double mx) {
  CK_BEGIN
  c10::optional<at::Scalar> lo, hi;
  if (has_min) lo = mn;
  if (has_max) hi = mx;
  T(self).clamp_(lo, hi);
  CK_END
}

ck_error ck_reduce(int op, ck_tensor h, const int64_t *dims, int64_t ndims, int keepdim,
                   ck_tensor *out) {
  CK_BEGIN
  const auto &a = T(h);
  bool all = ndims == 0;
  std::vector<int64_t> every;
  if (all) for (int64_t i = 0; i < a.dim(); i++) every.push_back(i);
  at::IntArrayRef d = all ? at::IntArrayRef(every) : ints(dims, ndims);
  at::OptionalIntArrayRef od = d;
  bool k = keepdim != 0;
  at::Tensor r;
  switch (op) {
    case CK_SUM: r = all && !k ? a.sum() : at::sum(a, od, k); break;
    case CK_MEAN: r = all && !k ? a.mean() : at::mean(a, od, k); break;
    case CK_AMAX: r = at::amax(a, d, k); break;
    case CK_AMIN: r = at::amin(a, d, k); break;
    case CK_LOGSUMEXP: r = at::logsumexp(a, d, k); break;
    case CK_NORM2: r = at::linalg_vector_norm(a, 2, od, k); break;
    case CK_VAR: r = at::var(a, od, /*correction=*/at::Scalar(1), k); break;
    case CK_STD: r = at::std(a, od, /*correction=*/at::Scalar(1), k); break;
    case CK_ANY:
      r = a;
      if (all && !k) { r = at::any(a); break; }
      for (auto it = d.rbegin(); it != d.rend(); ++it) r = at::any(r, *it, k);
      break;
    case CK_ALL:
      r = a;
      if (all && !k) { r = at::all(a); break; }
      for (auto it = d.rbegin(); it != d.rend(); ++it) r = at::all(r, *it, k);
      break;
    case CK_PROD:
      if (all && !k) { r = at::prod(a); break; }
      r = a;
      for (auto it = d.rbegin(); it != d.rend(); ++it) r = at::prod(r, *it, k);
      break;
    default: throw std::invalid_argument("unknown reduction " + std::to_string(op));
  }
  put(out, r);
  CK_END
}
ck_error ck_arg_reduce(int op, ck_tensor h, int64_t dim, int keepdim, ck_tensor *out) {
  CK_BEGIN
  if (op == CK_ARGMAX) put(out, at::argmax(T(h), dim, keepdim != 0));
  else if (op == CK_ARGMIN) put(out, at::argmin(T(h), dim, keepdim != 0));
  else throw std::invalid_argument("unknown arg reduction");
  CK_END
}
ck_error ck_cumsum(ck_tensor h, int64_t dim, ck_tensor *out) {
  CK_BEGIN
  put(out, at::cumsum(T(h), dim));
  CK_END
}

ck_error ck_linear(ck_tensor x, ck_tensor w, ck_tensor b, ck_tensor *out) {
  CK_BEGIN
  put(out, at::linear(T(x), T(w), OT(b)));
  CK_END
}
ck_error ck_conv2d(ck_tensor x, ck_tensor w, ck_tensor b, const int64_t *stride,
                   const int64_t *padding, const int64_t *dilation, int64_t groups,
                   ck_tensor *out) {
  CK_BEGIN
  put(out, at::conv2d(T(x), T(w), OT(b), ints(stride, 2), ints(padding, 2), ints(dilation, 2),
                      groups));
  CK_END
}
ck_error ck_layer_norm(ck_tensor x, const int64_t *shape, int64_t n, ck_tensor w, ck_tensor b,
                       double eps, ck_tensor *out) {
  CK_BEGIN
  put(out, at::layer_norm(T(x), ints(shape, n), OT(w), OT(b), eps));
  CK_END
}
ck_error ck_softmax(ck_tensor x, int64_t dim, int log, ck_tensor *out) {
  CK_BEGIN
  put(out, log ? at::log_softmax(T(x), dim) : at::softmax(T(x), dim));
  CK_END
}
ck_error ck_sdpa(ck_tensor q, ck_tensor k, ck_tensor v, ck_tensor mask, double dropout,
                 int is_causal, double scale, ck_tensor *out) {
  CK_BEGIN
  c10::optional<double> s;
  if (!std::isnan(scale)) s = scale;
  put(out, at::scaled_dot_product_attention(T(q), T(k), T(v), OT(mask), dropout, is_causal != 0, s));
  CK_END
}
ck_error ck_embedding(ck_tensor weight, ck_tensor ids, ck_tensor *out) {
  CK_BEGIN
  put(out, at::embedding(T(weight), T(ids)));
  CK_END
}
ck_error ck_cross_entropy(ck_tensor logits, ck_tensor target, int reduction, double smoothing,
                          ck_tensor *out) {
  CK_BEGIN
  if (reduction < 0 || reduction > 2) throw std::invalid_argument("bad reduction");
  put(out, at::cross_entropy_loss(T(logits), T(target), c10::nullopt, reduction, -100, smoothing));
  CK_END
}
ck_error ck_interpolate_scaled(ck_tensor h, int64_t oh, int64_t ow, int mode, int align_corners,
                               int antialias, double scale_h, double scale_w, ck_tensor *out) {
  CK_BEGIN
  const auto &x = T(h);
  if (x.dim() != 4) throw std::invalid_argument("interpolate expects a 4-D NCHW tensor");
  if (oh <= 0 || ow <= 0) throw std::invalid_argument("interpolate output size must be positive");
  std::vector<int64_t> size{oh, ow};
  bool ac = align_corners != 0;
  // NaN = no scale: the kernels then map coordinates by input/output size.
  c10::optional<double> sh = std::isnan(scale_h) ? c10::nullopt : c10::optional<double>(scale_h);
  c10::optional<double> sw = std::isnan(scale_w) ? c10::nullopt : c10::optional<double>(scale_w);
  at::Tensor r;
  switch (mode) {
    case 0:
      if (antialias) throw std::invalid_argument("antialias needs bilinear or bicubic mode");
      r = at::upsample_nearest2d(x, size, sh, sw);
      break;
    case 1:
      r = antialias ? at::_upsample_bilinear2d_aa(x, size, ac, sh, sw) : at::upsample_bilinear2d(x, size, ac, sh, sw);
      break;
    case 2:
      r = antialias ? at::_upsample_bicubic2d_aa(x, size, ac, sh, sw) : at::upsample_bicubic2d(x, size, ac, sh, sw);
      break;
    default: throw std::invalid_argument("unknown interpolation mode");
  }
  put(out, r);
  CK_END
}
ck_error ck_interpolate(ck_tensor h, int64_t oh, int64_t ow, int mode, int align_corners,
                        int antialias, ck_tensor *out) {
  return ck_interpolate_scaled(h, oh, ow, mode, align_corners, antialias, NAN, NAN, out);
}
ck_error ck_grid_sample(ck_tensor x, ck_tensor grid, int mode, int padding, int align_corners, ck_tensor *out) {
  CK_BEGIN
  if (mode < 0 || mode > 2 || padding < 0 || padding > 2) throw std::invalid_argument("grid_sample: bad mode or padding");
  put(out, at::grid_sampler(T(x), T(grid), mode, padding, align_corners != 0));
  CK_END
}
ck_error ck_bernoulli(ck_tensor like, const int64_t *shape, int64_t ndim, double p, ck_tensor *out) {
  CK_BEGIN
  if (!(p >= 0 && p <= 1)) throw std::invalid_argument("bernoulli: p must be in [0, 1]");
  put(out, at::empty(ints(shape, ndim), T(like).options()).bernoulli_(p));
  CK_END
}
ck_error ck_uniform_(ck_tensor t, double from, double to) {
  CK_BEGIN
  at::NoGradGuard ng;
  T(t).uniform_(from, to);
  CK_END
}
ck_error ck_linspace(double start, double end, int64_t steps, int device_type, int device_index, ck_tensor *out) {
  CK_BEGIN
  if (steps < 0) throw std::invalid_argument("linspace: negative steps");
  put(out, at::linspace(start, end, steps, at::TensorOptions().dtype(at::kFloat).device(device(device_type, device_index))));
  CK_END
}
ck_error ck_dropout(ck_tensor x, double p, int train, ck_tensor *out) {
  CK_BEGIN
  put(out, at::dropout(T(x), p, train != 0));
  CK_END
}

ck_error ck_reshape(ck_tensor a, const int64_t *shape, int64_t n, ck_tensor *out) {
  CK_BEGIN
  put(out, at::reshape(T(a), ints(shape, n)));
  CK_END
}
ck_error ck_permute(ck_tensor a, const int64_t *dims, int64_t n, ck_tensor *out) {
  CK_BEGIN
  put(out, T(a).permute(ints(dims, n)));
  CK_END
}
ck_error ck_transpose(ck_tensor a, int64_t d0, int64_t d1, ck_tensor *out) {
  CK_BEGIN
  put(out, at::transpose(T(a), d0, d1));
  CK_END
}
ck_error ck_expand(ck_tensor a, const int64_t *shape, int64_t n, ck_tensor *out) {
  CK_BEGIN
  put(out, T(a).expand(ints(shape, n)));
  CK_END
}
ck_error ck_squeeze(ck_tensor a, int64_t dim, ck_tensor *out) {
  CK_BEGIN
  put(out, at::squeeze(T(a), dim));
  CK_END
}
ck_error ck_unsqueeze(ck_tensor a, int64_t dim, ck_tensor *out) {
  CK_BEGIN
  put(out, at::unsqueeze(T(a), dim));
  CK_END
}
ck_error ck_flatten(ck_tensor a, int64_t start, int64_t end, ck_tensor *out) {
  CK_BEGIN
  put(out, at::flatten(T(a), start, end));
  CK_END
}
static std::vector<at::Tensor> tensor_list(const ck_tensor *ts, int64_t n) {
  if (n <= 0 || !ts) throw std::invalid_argument("empty tensor list");
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}
ck_error ck_cat(const ck_tensor *ts, int64_t n, int64_t dim, ck_tensor *out) {
  CK_BEGIN
  put(out, at::cat(tensor_list(ts, n), dim));
  CK_END
}
ck_error ck_stack(const ck_tensor *ts, int64_t n, int64_t dim, ck_tensor *out) {
  CK_BEGIN
  put(out, at::stack(tensor_list(ts, n), dim));
  CK_END
}
ck_error ck_split(ck_tensor a, const int64_t *sizes, int64_t n, int64_t dim, ck_tensor *outs) {
  CK_BEGIN
  auto parts = at::split_with_sizes(T(a), ints(sizes, n), dim);
  if (static_cast<int64_t>(parts.size()) != n) throw std::runtime_error("split size mismatch");
  for (int64_t i = 0; i < n; i++) outs[i] = new ck_tensor_s{parts[static_cast<size_t>(i)]};
  CK_END
}
ck_error ck_narrow(ck_tensor a, int64_t dim, int64_t start, int64_t length, ck_tensor *out) {
  CK_BEGIN
  put(out, at::narrow(T(a), dim, start, length));
  CK_END
}
ck_error ck_slice(ck_tensor a, int64_t dim, int64_t start, int64_t end, int64_t step, ck_tensor *out) {
  CK_BEGIN
  put(out, at::slice(T(a), dim, start, end, step));
  CK_END
}
ck_error ck_select(ck_tensor a, int64_t dim, int64_t index, ck_tensor *out) {
  CK_BEGIN
  put(out, at::select(T(a), dim, index));
  CK_END
}
ck_error ck_index_select(ck_tensor a, int64_t dim, ck_tensor index, ck_tensor *out) {
  CK_BEGIN
  put(out, at::index_select(T(a), dim, T(index)));
  CK_END
}
ck_error ck_gather(ck_tensor a, int64_t dim, ck_tensor index, ck_tensor *out) {
  CK_BEGIN
  put(out, at::gather(T(a), dim, T(index)));
  CK_END
}
ck_error ck_masked_fill(ck_tensor a, ck_tensor mask, double value, ck_tensor *out) {
  CK_BEGIN
  put(out, at::masked_fill(T(a), T(mask), value));
  CK_END
}
ck_error ck_where(ck_tensor cond, ck_tensor a, ck_tensor b, ck_tensor *out) {
  CK_BEGIN
  put(out, at::where(T(cond), T(a), T(b)));
  CK_END
}
ck_error ck_clamp(ck_tensor a, int has_min, double mn, int has_max, double mx, ck_tensor *out) {
  CK_BEGIN
  c10::optional<at::Scalar> lo, hi;
  if (has_min) lo = mn;
  if (has_max) hi = mx;
  put(out, at::clamp(T(a), lo, hi));
  CK_END
}
ck_error ck_sort(ck_tensor a, int64_t dim, int descending, int stable, ck_tensor *values,
                 ck_tensor *indices) {
  CK_BEGIN
  auto r = at::sort(T(a), stable != 0, dim, descending != 0);
  put(values, std::get<0>(r));
  put(indices, std::get<1>(r));
  CK_END
}
ck_error ck_topk(ck_tensor a, int64_t k, int64_t dim, int largest, int sorted, ck_tensor *values,
                 ck_tensor *indices) {
  CK_BEGIN
  auto r = at::topk(T(a), k, dim, largest != 0, sorted != 0);
  put(values, std::get<0>(r));
  put(indices, std::get<1>(r));
  CK_END
}
ck_error ck_repeat(ck_tensor a, const int64_t *repeats, int64_t n, ck_tensor *out) {
  CK_BEGIN
  put(out, T(a).repeat(ints(repeats, n)));
  CK_END
}
ck_error ck_tril(ck_tensor a, int64_t diagonal, ck_tensor *out) {
  CK_BEGIN
  put(out, at::tril(T(a), diagonal));
  CK_END
}
ck_error ck_pad(ck_tensor a, const int64_t *pad, int64_t n, double value, ck_tensor *out) {
  CK_BEGIN
  put(out, at::constant_pad_nd(T(a), ints(pad, n), value));
  CK_END
}

ck_error ck_as_strided(ck_tensor a, const int64_t *size, const int64_t *stride, int64_t n, int64_t offset,
                       ck_tensor *out) {
  CK_BEGIN
  const auto &t = T(a);
  if (offset < 0) throw std::invalid_argument("negative storage offset");
  int64_t last = offset;
  for (int64_t i = 0; i < n; i++) {
    if (size[i] < 0 || stride[i] < 0) throw std::invalid_argument("negative size or stride");
    if (size[i] == 0) { last = -1; break; }
  }
  // Sizes and strides come from files: the reach is computed with overflow checks (signed
  // overflow would wrap and pass the bound check below).
  for (int64_t i = 0; i < n && last >= 0; i++) {
    int64_t reach = 0;
    if (__builtin_mul_overflow(size[i] - 1, stride[i], &reach) || __builtin_add_overflow(last, reach, &last))
      throw std::invalid_argument("view size and stride overflow a 64-bit element index");
  }
  if (last >= t.numel()) throw std::invalid_argument("view reaches element " + std::to_string(last) +
                                                     " of a storage of " + std::to_string(t.numel()));
  put(out, t.as_strided(ints(size, n), ints(stride, n), offset));
  CK_END
}

ck_error ck_set_requires_grad(ck_tensor t, int requires_grad) {
  CK_BEGIN
  T(t).set_requires_grad(requires_grad != 0);
  CK_END
}
ck_error ck_backward(ck_tensor t, ck_tensor grad, int retain_graph) {
  CK_BEGIN
  auto g = OT(grad);
  T(t).backward(g.has_value() ? *g : at::Tensor(), retain_graph != 0);
  CK_END
}
ck_error ck_grad(ck_tensor t, ck_tensor *out) {
  CK_BEGIN
  const auto &g = T(t).grad();
  *out = g.defined() ? new ck_tensor_s{g} : nullptr;
  CK_END
}
ck_error ck_zero_grad(ck_tensor t) {
  CK_BEGIN
  T(t).mutable_grad().reset();
  CK_END
}

}  // extern "C"

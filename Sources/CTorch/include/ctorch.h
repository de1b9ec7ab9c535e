// ClipKit's C surface over libtorch (ATen). Plain C so Swift imports it directly.
//
// Conventions (one for the whole file, so the Swift side can wrap it mechanically):
// - Every fallible entry point returns `ck_error`: NULL on success, otherwise a malloc'd,
//   NUL-terminated message that the caller releases with `ck_free`. No C++ exception ever
//   leaves this library: each body catches c10::Error, std::exception and everything else.
// - Results come back through out-pointers (`ck_tensor *out`); a returned tensor handle is owned
//   by the caller and released with `ck_tensor_free`.
// - Optional tensor arguments are passed as NULL.
// - dtype and device codes are ClipKit's own (below), not c10's, so they stay stable.
#ifndef CLIPKIT_CTORCH_H
#define CLIPKIT_CTORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ck_tensor_s *ck_tensor;
typedef struct ck_generator_s *ck_generator;
typedef char *ck_error;

enum {
  CK_F32 = 0, CK_F16 = 1, CK_BF16 = 2, CK_F64 = 3, CK_I64 = 4, CK_I32 = 5, CK_U8 = 6, CK_BOOL = 7,
  CK_I8 = 8, CK_I16 = 9
};
enum { CK_CPU = 0, CK_CUDA = 1, CK_META = 2 };

void ck_free(void *p);
void ck_tensor_free(ck_tensor t);

// ---- library ----------------------------------------------------------------------------------
const char *ck_torch_version(void);           // static string, e.g. "2.11.0"
ck_error ck_load_library(const char *path);   // dlopen(RTLD_NOW|RTLD_GLOBAL), e.g. libtorch_cuda.so
int ck_cuda_available(void);
int ck_cuda_device_count(void);
void ck_set_num_threads(int n);
/// Keeps freed memory in the process heap for reuse (glibc: no mmap, no trimming).
void ck_keep_freed_memory(void);
int ck_get_num_threads(void);
// Seeds the CPU generator, and the CUDA generators when all_devices (only once CUDA is loaded:
// at::manual_seed asks libtorch's CUDA hooks, which fixes CUDA off for a process that has not loaded it).
ck_error ck_manual_seed(uint64_t seed, int all_devices);
// The default generator of a device: its state as a uint8 CPU tensor, and set back from one.
// Makes a GPU the current device (allocations, streams and contexts go there).
ck_error ck_set_device(int index);
ck_error ck_zeros_like(ck_tensor h, ck_tensor *out);   // same shape, dtype, device and strides
// torch.use_deterministic_algorithms(on, warn_only) and torch.backends.cudnn.benchmark = on.
ck_error ck_set_deterministic(int on, int warn_only);
ck_error ck_set_cudnn_benchmark(int on);
int ck_deterministic(void);     // 0 off, 1 on, 2 on with warn_only
int ck_cudnn_benchmark(void);
ck_error ck_cuda_synchronize(int device_index);

// ---- devices ----------------------------------------------------------------------------------
// The folder holding the loaded libtorch_cpu.so (where the matching libtorch_cuda.so lives);
// malloc'd, release with ck_free; NULL if unknown.
char *ck_torch_library_dir(void);
// The NVIDIA driver, asked directly through libcuda.so.1 (dlopen + dlsym, no CUDA headers), so
// that looking for GPUs never touches libtorch's CUDA hooks, which libtorch fixes on first use.
ck_error ck_driver_device_count(int *count);
ck_error ck_driver_device(int index, char *name, int name_len, size_t *total_memory, int *major, int *minor);
// Caching-allocator statistics of a CUDA device (bytes).
ck_error ck_cuda_memory(int device_index, int64_t *allocated, int64_t *peak_allocated, int64_t *reserved,
                        int64_t *peak_reserved);
ck_error ck_cuda_reset_peak(int device_index);
// TF32 in cuBLAS matmuls and cuDNN convolutions (torch.backends.cuda.matmul.allow_tf32 /
// torch.backends.cudnn.allow_tf32).
ck_error ck_set_tf32(int matmul, int cudnn);
// Which fused attention kernels SDPA may use (TAO's deterministic mode allows math only).
ck_error ck_set_sdp_backends(int flash, int mem_efficient, int cudnn, int math);
// The backend SDPA picks for these inputs: 0 math, 1 flash, 2 memory-efficient, 3 cuDNN, 4 other.
ck_error ck_sdp_choice(ck_tensor q, ck_tensor k, ck_tensor v, int is_causal, int64_t *backend);
ck_error ck_pin_memory(ck_tensor h, ck_tensor *out);
// An uninitialised CPU tensor in page-locked memory, and a bounded copy of bytes into a CPU
// tensor's contiguous storage at a byte offset (batches are assembled in place, then uploaded).
ck_error ck_empty_pinned(const int64_t *shape, int64_t ndim, int dtype, ck_tensor *out);
ck_error ck_write_bytes(ck_tensor h, size_t offset, const void *src, size_t nbytes);
// torch.optim.AdamW(fused=True)'s kernel: one multi-tensor launch updates every parameter of a
// group in place; `steps` are float step counters (already incremented) on the parameters' device.
ck_error ck_fused_adamw(const ck_tensor *params, const ck_tensor *grads, const ck_tensor *exp_avgs,
                        const ck_tensor *exp_avg_sqs, const ck_tensor *steps, int64_t n, double lr, double beta1,
                        double beta2, double weight_decay, double eps);
// GradScaler's ops: unscale grads in place (found_inf set to 1 on inf/NaN), then update the scale.
ck_error ck_amp_unscale(const ck_tensor *grads, int64_t n, ck_tensor found_inf, ck_tensor inv_scale);
ck_error ck_amp_update_scale(ck_tensor scale, ck_tensor growth_tracker, ck_tensor found_inf, double growth,
                             double backoff, int64_t interval);

// ---- grad mode, autocast (thread-local in libtorch) ------------------------------------------
int ck_grad_enabled(void);
void ck_set_grad_enabled(int enabled);
ck_error ck_autocast_set(int device_type, int enabled, int dtype);   // returns previous via out?
int ck_autocast_enabled(int device_type);
int ck_autocast_dtype(int device_type);
void ck_autocast_enter(void);   // increments nesting
void ck_autocast_exit(void);    // decrements nesting and clears the cast cache at depth 0

// ---- introspection (valid handle required; never fails) ---------------------------------------
int ck_tensor_defined(ck_tensor t);
int64_t ck_tensor_dim(ck_tensor t);
void ck_tensor_sizes(ck_tensor t, int64_t *out);
void ck_tensor_strides(ck_tensor t, int64_t *out);
int64_t ck_tensor_numel(ck_tensor t);
int ck_tensor_dtype(ck_tensor t);              // -1 for a dtype ClipKit does not name
int ck_tensor_device_type(ck_tensor t);
int ck_tensor_device_index(ck_tensor t);
int ck_tensor_requires_grad(ck_tensor t);
int ck_tensor_is_contiguous(ck_tensor t);
const void *ck_tensor_data_ptr(ck_tensor t);   // CPU contiguous tensors only; NULL otherwise

// ---- creation and transfer --------------------------------------------------------------------
ck_error ck_from_data(const void *data, size_t nbytes, const int64_t *shape, int64_t ndim, int dtype,
                      ck_tensor *out);   // copies; nbytes must equal numel * itemsize
ck_error ck_full(const int64_t *shape, int64_t ndim, double value, int dtype, int device_type,
                 int device_index, ck_tensor *out);
ck_error ck_empty(const int64_t *shape, int64_t ndim, int dtype, int device_type, int device_index,
                  ck_tensor *out);
ck_error ck_arange(double start, double end, double step, int dtype, int device_type,
                   int device_index, ck_tensor *out);
// kind: 0 uniform [0,1), 1 standard normal
ck_error ck_rand(int kind, const int64_t *shape, int64_t ndim, int dtype, int device_type,
                 int device_index, ck_generator gen, ck_tensor *out);
ck_error ck_randint(int64_t low, int64_t high, const int64_t *shape, int64_t ndim, int device_type,
                    int device_index, ck_generator gen, ck_tensor *out);
ck_error ck_randperm(int64_t n, int device_type, int device_index, ck_generator gen, ck_tensor *out);
ck_error ck_copy_to_buffer(ck_tensor t, void *dst, size_t nbytes);   // any device/layout -> host
ck_error ck_to(ck_tensor t, int dtype, int device_type, int device_index, int non_blocking, ck_tensor *out);
ck_error ck_item_double(ck_tensor t, double *out);
ck_error ck_shallow_copy(ck_tensor t, ck_tensor *out);   // new handle, same tensor

// ---- generators -------------------------------------------------------------------------------
ck_error ck_generator_new(uint64_t seed, ck_generator *out);   // CPU generator
void ck_generator_free(ck_generator g);
ck_error ck_generator_get_state(ck_generator g, ck_tensor *out);   // uint8 tensor
ck_error ck_generator_set_state(ck_generator g, ck_tensor state);

// ---- elementwise ------------------------------------------------------------------------------
enum {
  CK_NEG, CK_EXP, CK_LOG, CK_SQRT, CK_RSQRT, CK_ABS, CK_SIGMOID, CK_TANH, CK_RELU, CK_GELU_ERF,
  CK_GELU_TANH, CK_LOG_SIGMOID, CK_SIN, CK_COS, CK_FLOOR, CK_CEIL, CK_ROUND, CK_LOGICAL_NOT,
  CK_SIGN, CK_SQUARE, CK_CONTIGUOUS, CK_CLONE, CK_DETACH, CK_ERF, CK_LOG1P, CK_RECIPROCAL,
  CK_ISNAN, CK_ISFINITE, CK_SILU
};
ck_error ck_unary(int op, ck_tensor a, ck_tensor *out);

enum {
  CK_ADD, CK_SUB, CK_MUL, CK_DIV, CK_POW, CK_MAXIMUM, CK_MINIMUM, CK_EQ, CK_NE, CK_LT, CK_LE, CK_GT,
  CK_GE, CK_LOGICAL_AND, CK_LOGICAL_OR, CK_MATMUL, CK_REMAINDER, CK_ATAN2, CK_FLOOR_DIVIDE
};
ck_error ck_binary(int op, ck_tensor a, ck_tensor b, ck_tensor *out);
// a <op> s, with the same op codes (CK_MATMUL excluded); CK_RSUB_SCALAR computes s - a.
enum { CK_RSUB_SCALAR = 100 };
ck_error ck_binary_scalar(int op, ck_tensor a, double s, ck_tensor *out);

// In place (for optimizers and parameter loading; call with grad mode off on leaves).
ck_error ck_add_(ck_tensor self, ck_tensor other, double alpha);
ck_error ck_mul_scalar_(ck_tensor self, double s);
ck_error ck_mul_(ck_tensor self, ck_tensor other);
ck_error ck_addcmul_(ck_tensor self, ck_tensor t1, ck_tensor t2, double value);
ck_error ck_addcdiv_(ck_tensor self, ck_tensor t1, ck_tensor t2, double value);
ck_error ck_lerp_(ck_tensor self, ck_tensor end, double weight);
ck_error ck_copy_(ck_tensor self, ck_tensor src);
ck_error ck_fill_(ck_tensor self, double value);
ck_error ck_clamp_(ck_tensor self, int has_min, double min, int has_max, double max);

// ---- reductions -------------------------------------------------------------------------------
enum { CK_SUM, CK_MEAN, CK_AMAX, CK_AMIN, CK_LOGSUMEXP, CK_NORM2, CK_VAR, CK_STD, CK_ANY, CK_ALL,
       CK_PROD };
// ndims == 0 reduces over every dimension. VAR/STD are unbiased (correction 1).
ck_error ck_reduce(int op, ck_tensor a, const int64_t *dims, int64_t ndims, int keepdim,
                   ck_tensor *out);
enum { CK_ARGMAX, CK_ARGMIN };
ck_error ck_arg_reduce(int op, ck_tensor a, int64_t dim, int keepdim, ck_tensor *out);
ck_error ck_cumsum(ck_tensor a, int64_t dim, ck_tensor *out);

// ---- neural-network functions -----------------------------------------------------------------
ck_error ck_linear(ck_tensor x, ck_tensor w, ck_tensor b, ck_tensor *out);
ck_error ck_conv2d(ck_tensor x, ck_tensor w, ck_tensor b, const int64_t *stride,
                   const int64_t *padding, const int64_t *dilation, int64_t groups, ck_tensor *out);
ck_error ck_layer_norm(ck_tensor x, const int64_t *normalized_shape, int64_t n, ck_tensor w,
                       ck_tensor b, double eps, ck_tensor *out);
ck_error ck_softmax(ck_tensor x, int64_t dim, int log, ck_tensor *out);
// scale: NaN means 1/sqrt(head_dim). mask: bool (true = attend) or float (added).
ck_error ck_sdpa(ck_tensor q, ck_tensor k, ck_tensor v, ck_tensor mask, double dropout,
                 int is_causal, double scale, ck_tensor *out);
ck_error ck_embedding(ck_tensor weight, ck_tensor ids, ck_tensor *out);
// reduction: 0 none, 1 mean, 2 sum
ck_error ck_cross_entropy(ck_tensor logits, ck_tensor target, int reduction, double label_smoothing,
                          ck_tensor *out);
// mode: 0 nearest, 1 bilinear, 2 bicubic; 4-D NCHW input
ck_error ck_interpolate(ck_tensor x, int64_t out_h, int64_t out_w, int mode, int align_corners,
                        int antialias, ck_tensor *out);
// The same with PyTorch's scale_factor semantics: coordinates map by 1/scale (NaN = by size).
// F.grid_sample(x [N,C,H,W], grid [N,Ho,Wo,2]): mode 0 bilinear / 1 nearest / 2 bicubic,
// padding 0 zeros / 1 border / 2 reflection.
ck_error ck_grid_sample(ck_tensor x, ck_tensor grid, int mode, int padding, int align_corners, ck_tensor *out);
// torch.empty(shape, like x's dtype/device).bernoulli_(p): timm's DropPath draw.
ck_error ck_bernoulli(ck_tensor like, const int64_t *shape, int64_t ndim, double p, ck_tensor *out);
// In place: t.uniform_(from, to) from the default generator (torch.nn.init's draws).
ck_error ck_uniform_(ck_tensor t, double from, double to);
// torch.linspace(start, end, steps) in float32 on the device.
ck_error ck_linspace(double start, double end, int64_t steps, int device_type, int device_index, ck_tensor *out);
ck_error ck_interpolate_scaled(ck_tensor x, int64_t out_h, int64_t out_w, int mode, int align_corners,
                               int antialias, double scale_h, double scale_w, ck_tensor *out);
ck_error ck_dropout(ck_tensor x, double p, int train, ck_tensor *out);

// ---- shape and indexing -----------------------------------------------------------------------
ck_error ck_reshape(ck_tensor a, const int64_t *shape, int64_t n, ck_tensor *out);
ck_error ck_permute(ck_tensor a, const int64_t *dims, int64_t n, ck_tensor *out);
ck_error ck_transpose(ck_tensor a, int64_t d0, int64_t d1, ck_tensor *out);
ck_error ck_expand(ck_tensor a, const int64_t *shape, int64_t n, ck_tensor *out);
ck_error ck_squeeze(ck_tensor a, int64_t dim, ck_tensor *out);
ck_error ck_unsqueeze(ck_tensor a, int64_t dim, ck_tensor *out);
ck_error ck_flatten(ck_tensor a, int64_t start, int64_t end, ck_tensor *out);
ck_error ck_cat(const ck_tensor *ts, int64_t n, int64_t dim, ck_tensor *out);
ck_error ck_stack(const ck_tensor *ts, int64_t n, int64_t dim, ck_tensor *out);
ck_error ck_split(ck_tensor a, const int64_t *sizes, int64_t n, int64_t dim, ck_tensor *outs);
ck_error ck_narrow(ck_tensor a, int64_t dim, int64_t start, int64_t length, ck_tensor *out);
ck_error ck_slice(ck_tensor a, int64_t dim, int64_t start, int64_t end, int64_t step, ck_tensor *out);
ck_error ck_select(ck_tensor a, int64_t dim, int64_t index, ck_tensor *out);
ck_error ck_index_select(ck_tensor a, int64_t dim, ck_tensor index, ck_tensor *out);
ck_error ck_gather(ck_tensor a, int64_t dim, ck_tensor index, ck_tensor *out);
ck_error ck_masked_fill(ck_tensor a, ck_tensor mask, double value, ck_tensor *out);
ck_error ck_where(ck_tensor cond, ck_tensor a, ck_tensor b, ck_tensor *out);
ck_error ck_clamp(ck_tensor a, int has_min, double min, int has_max, double max, ck_tensor *out);
ck_error ck_sort(ck_tensor a, int64_t dim, int descending, int stable, ck_tensor *values,
                 ck_tensor *indices);
ck_error ck_topk(ck_tensor a, int64_t k, int64_t dim, int largest, int sorted, ck_tensor *values,
                 ck_tensor *indices);
ck_error ck_repeat(ck_tensor a, const int64_t *repeats, int64_t n, ck_tensor *out);
ck_error ck_tril(ck_tensor a, int64_t diagonal, ck_tensor *out);
ck_error ck_pad(ck_tensor a, const int64_t *pad, int64_t n, double value, ck_tensor *out);
ck_error ck_as_strided(ck_tensor a, const int64_t *size, const int64_t *stride, int64_t n, int64_t offset,
                       ck_tensor *out);

// ---- autograd ---------------------------------------------------------------------------------
// A block for activation checkpointing: computes *out from input (a new handle), or an error.
typedef ck_error (*ck_block_fn)(void *ctx, ck_tensor input, ck_tensor *out);
// Runs `fn` without keeping activations; the backward pass runs it again with gradients on.
ck_error ck_checkpoint(ck_block_fn fn, void *ctx, ck_tensor input, ck_tensor *out);
ck_error ck_set_requires_grad(ck_tensor t, int requires_grad);
ck_error ck_backward(ck_tensor t, ck_tensor grad, int retain_graph);
ck_error ck_grad(ck_tensor t, ck_tensor *out);   // *out = NULL when no gradient exists
ck_error ck_zero_grad(ck_tensor t);              // drops the gradient (set_to_none)

// ---- distributed (c10d, dist.cpp) ---------------------------------------------------------------
typedef struct ck_pg_s *ck_pg;
// Joins a Gloo process group through a TCPStore at host:port (rank 0 hosts it unless
// store_client_only, as under torchrun's agent store). Every collective waits at most timeout_ms.
ck_error ck_pg_gloo(const char *host, int port, int rank, int world, int store_client_only, int64_t timeout_ms,
                    ck_pg *out);
// The same with NCCL (CUDA tensors; CUDA must be loaded and the rank's GPU current).
ck_error ck_pg_nccl(const char *host, int port, int rank, int world, int store_client_only, int64_t timeout_ms,
                    ck_pg *out);
void ck_pg_free(ck_pg pg);
ck_error ck_pg_allreduce(ck_pg pg, const ck_tensor *ts, int64_t n);   // in place, sum
ck_error ck_pg_broadcast(ck_pg pg, ck_tensor t, int root);           // in place
ck_error ck_pg_allgather(ck_pg pg, ck_tensor in, ck_tensor *out);    // ranks' tensors stacked along dim 0
ck_error ck_pg_barrier(ck_pg pg);
// all_gather along dim 0 whose backward gives each rank the sum of the gradients of its slice.
ck_error ck_all_gather_with_grad(ck_pg pg, ck_tensor in, ck_tensor *out);
// Sends `in` to rank `to` and returns what rank `from` sent; the backward runs the other way.
ck_error ck_neighbour_exchange(ck_pg pg, int to, int from, ck_tensor in, ck_tensor *out);
// Sum over ranks; the backward sums the gradients over ranks too.
ck_error ck_all_reduce_with_grad(ck_pg pg, ck_tensor in, ck_tensor *out);
// Gradient averaging overlapped with backward (DDP's reducer): buckets of about bucket_bytes
// start their all-reduce from post-accumulate-grad hooks as backward fills them. prepare() before
// each backward, finish() after it (waits, divides by the world size, writes the gradients back).
typedef struct ck_reducer_s *ck_reducer;
ck_error ck_reducer_new(ck_pg pg, const ck_tensor *params, int64_t n, int64_t bucket_bytes, ck_reducer *out);
ck_error ck_reducer_prepare(ck_reducer r);
ck_error ck_reducer_finish(ck_reducer r, int *redone, int64_t *started_during_backward);
int64_t ck_reducer_buckets(ck_reducer r);
void ck_reducer_free(ck_reducer r);

#ifdef __cplusplus
}
#endif
#endif

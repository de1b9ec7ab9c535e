// c10d from C: a TCPStore rendezvous and a Gloo process group (CPU), with the collectives data-
// parallel training uses, and an all-gather whose backward sums the gradients back (autograd-aware).
// Kept apart from ctorch.cpp because the c10d and autograd headers are heavy.
//
// The Gloo process group without gloo's headers: libtorch ships ProcessGroupGloo.hpp but not the
// gloo headers it includes, so this file never sees the class. It uses two symbols libtorch_cpu
// exports, bound by their mangled names: ProcessGroupGloo::Options::create_default(timeout) and
// the constructor ProcessGroupGloo(store, rank, size, options). ABI facts relied on (checked
// against torch 2.11's ProcessGroupGloo.hpp): ProcessGroupGloo's first and only base is
// c10d::Backend and Options' is Backend::Options (so their pointers are the base pointers); any
// c10::intrusive_ptr<T> is one pointer passed and returned as a non-trivial class; the object is
// 488 bytes, built here in a larger buffer; everything after construction goes through
// c10d::Backend's virtual functions, declared in the shipped Backend.hpp.
#include "shim.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/headeronly/version.h>

#include <dlfcn.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>


// The symbol names, the base-class layout and the object size below are torch 2.11's.
static_assert(TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 11, "dist.cpp binds ProcessGroupGloo as torch 2.11 builds it");

using BackendPtr = c10::intrusive_ptr<c10d::Backend>;
using OptionsPtr = c10::intrusive_ptr<c10d::Backend::Options>;

// c10d::ProcessGroupGloo::Options::create_default(std::chrono::milliseconds)
extern OptionsPtr ck_gloo_create_default(std::chrono::milliseconds timeout) __asm__(
    "_ZN4c10d16ProcessGroupGloo7Options14create_defaultENSt6chrono8durationIlSt5ratioILl1ELl1000EEEE");
// c10d::ProcessGroupGloo::ProcessGroupGloo(const intrusive_ptr<Store>&, int, int, intrusive_ptr<Options>)
extern void ck_gloo_construct(void *self, const c10::intrusive_ptr<c10d::Store> &store, int rank, int size,
                              OptionsPtr options) __asm__(
    "_ZN4c10d16ProcessGroupGlooC1ERKN3c1013intrusive_ptrINS_5StoreENS1_6detail34intrusive_target_default_null_"
    "typeIS3_EEEEiiNS2_INS0_7OptionsENS5_ISA_EEEE");

struct ck_pg_s {
  c10::intrusive_ptr<c10d::Store> store;
  BackendPtr backend;
  // The buffer the group was built in: freed here (its deleting destructor would free it with the
  // class's size, not the buffer's), so the group holds one extra reference until ck_pg_free.
  void *buffer;
  int rank;
  int size;
  std::chrono::milliseconds timeout;
  // Point-to-point tags: every rank numbers its exchanges in the same order (forward passes count
  // up from 0, backward passes from 1 << 30), so a message always meets its receive.
  int forwardTag = 0;
  int backwardTag = 1 << 30;
  // NCCL runs a send and a receive to the same peer only as one group (else each waits for the
  // other): point-to-point exchanges are coalesced there.
  bool coalesceP2P = false;
};

using namespace ck;

namespace {

ck_pg_s &P(ck_pg pg) {
  if (!pg) throw std::invalid_argument("null process group");
  return *pg;
}
void wait(const c10::intrusive_ptr<c10d::Work> &w, const ck_pg_s &pg) {
  if (!w->wait(pg.timeout)) throw std::runtime_error("collective timed out");
}

// all_gather whose backward is the matching reduce-scatter: the gradient of every rank's copy of
// this rank's slice, summed (an all-reduce of the whole gradient, then this rank's slice; Gloo has
// no reduce-scatter of equal blocks). torch.distributed.nn.functional.all_gather's rule.
struct AllGatherWithGrad : public torch::autograd::Function<AllGatherWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext *c, at::Tensor x, int64_t pg_handle) {
    auto &pg = *reinterpret_cast<ck_pg_s *>(pg_handle);
    c->saved_data["pg"] = pg_handle;
    c->saved_data["rows"] = x.size(0);
    at::Tensor in = x.contiguous();
    auto sizes = in.sizes().vec();
    sizes[0] *= pg.size;
    at::Tensor out = at::empty(sizes, in.options());
    wait(pg.backend->_allgather_base(out, in), pg);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *c,
                                                 torch::autograd::variable_list grads) {
    auto &pg = *reinterpret_cast<ck_pg_s *>(c->saved_data["pg"].toInt());
    int64_t rows = c->saved_data["rows"].toInt();
    std::vector<at::Tensor> g{grads[0].contiguous().clone()};
    wait(pg.backend->allreduce(g), pg);
    return {g[0].narrow(0, pg.rank * rows, rows).clone(), at::Tensor()};
  }
};

// Sends x to `to` while receiving the same-shaped tensor from `from`. Its backward sends the
// gradient back to `from` and receives x's gradient from `to` (open_clip's neighbour exchange).
at::Tensor exchange(ck_pg_s &pg, const at::Tensor &x, int to, int from, int tag) {
  std::vector<at::Tensor> out{at::empty_like(x, at::MemoryFormat::Contiguous)};
  std::vector<at::Tensor> in{x.contiguous()};
  if (pg.coalesceP2P) {
    pg.backend->startCoalescing();
    pg.backend->send(in, to, tag);
    pg.backend->recv(out, from, tag);
    auto w = pg.backend->endCoalescing();
    if (w) wait(w, pg);
    return out[0];
  }
  auto s = pg.backend->send(in, to, tag);
  auto r = pg.backend->recv(out, from, tag);
  wait(s, pg);
  wait(r, pg);
  return out[0];
}

struct NeighbourExchange : public torch::autograd::Function<NeighbourExchange> {
  static at::Tensor forward(torch::autograd::AutogradContext *c, at::Tensor x, int64_t pg_handle, int64_t to, int64_t from) {
    auto &pg = *reinterpret_cast<ck_pg_s *>(pg_handle);
    c->saved_data["pg"] = pg_handle;
    c->saved_data["to"] = to;
    c->saved_data["from"] = from;
    return exchange(pg, x, static_cast<int>(to), static_cast<int>(from), pg.forwardTag++);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *c,
                                                 torch::autograd::variable_list grads) {
    auto &pg = *reinterpret_cast<ck_pg_s *>(c->saved_data["pg"].toInt());
    int to = static_cast<int>(c->saved_data["to"].toInt()), from = static_cast<int>(c->saved_data["from"].toInt());
    return {exchange(pg, grads[0], from, to, pg.backwardTag++), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Sum over ranks whose backward is the same sum of the gradients (torch.distributed.nn.all_reduce).
struct AllReduceWithGrad : public torch::autograd::Function<AllReduceWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext *c, at::Tensor x, int64_t pg_handle) {
    auto &pg = *reinterpret_cast<ck_pg_s *>(pg_handle);
    c->saved_data["pg"] = pg_handle;
    std::vector<at::Tensor> v{x.contiguous().clone()};
    wait(pg.backend->allreduce(v), pg);
    return v[0];
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *c,
                                                 torch::autograd::variable_list grads) {
    auto &pg = *reinterpret_cast<ck_pg_s *>(c->saved_data["pg"].toInt());
    std::vector<at::Tensor> v{grads[0].contiguous().clone()};
    wait(pg.backend->allreduce(v), pg);
    return {v[0], at::Tensor()};
  }
};

}  // namespace

extern "C" {

ck_error ck_neighbour_exchange(ck_pg pg, int to, int from, ck_tensor in, ck_tensor *out) {
  CK_BEGIN
  auto &g = P(pg);
  if (to < 0 || to >= g.size || from < 0 || from >= g.size) throw std::invalid_argument("neighbour rank out of range");
  *out = new ck_tensor_s{NeighbourExchange::apply(T(in), reinterpret_cast<int64_t>(pg), to, from)};
  CK_END
}

ck_error ck_all_reduce_with_grad(ck_pg pg, ck_tensor in, ck_tensor *out) {
  CK_BEGIN
  P(pg);
  *out = new ck_tensor_s{AllReduceWithGrad::apply(T(in), reinterpret_cast<int64_t>(pg))};
  CK_END
}


}  // extern "C"

namespace {
c10::intrusive_ptr<c10d::Store> tcp_store(const char *host, int port, int rank, int world, int store_client_only,
                                          std::chrono::milliseconds timeout) {
  if (!host) throw std::invalid_argument("null host");
  if (world < 1 || rank < 0 || rank >= world) throw std::invalid_argument("rank must be in [0, world size)");
  if (port <= 0 || port > 65535) throw std::invalid_argument("port must be in 1..65535");
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  // Under torchrun's agent store every rank is a client; otherwise rank 0 hosts the store.
  o.isServer = !store_client_only && rank == 0;
  o.numWorkers = static_cast<std::size_t>(world);
  o.waitWorkers = false;
  o.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
}
// Builds a group object in a zeroed buffer of `bytes` (larger than the class) and adopts it, with
// one extra reference so that it is never freed by its deleting destructor, which would free the
// class's size: ck_pg_free destroys it in place and frees the buffer.
ck_pg_s *adopt(size_t bytes, const std::function<void(void *)> &construct, c10::intrusive_ptr<c10d::Store> tcp, int rank, int world,
               std::chrono::milliseconds timeout) {
  void *self = ::operator new(bytes);
  std::memset(self, 0, bytes);
  try {
    construct(self);
  } catch (...) {
    ::operator delete(self);
    throw;
  }
  auto backend = BackendPtr::unsafe_steal_from_new(static_cast<c10d::Backend *>(self));
  c10::raw::intrusive_ptr::incref(backend.get());
  return new ck_pg_s{std::move(tcp), backend, self, rank, world, timeout};
}
void *symbol(const char *mangled, const char *what) {
  void *p = dlsym(RTLD_DEFAULT, mangled);
  if (!p) throw std::runtime_error(std::string(what) + " is not in the loaded libtorch (load CUDA first: libtorch_cuda.so holds NCCL)");
  return p;
}
}  // namespace

extern "C" {

// NCCL, the same way as Gloo but from libtorch_cuda.so, which CUDA.load() dlopened globally:
// ProcessGroupNCCL::Options::Options(bool) and the constructor ProcessGroupNCCL(intrusive_ptr<Store>,
// int, int, intrusive_ptr<Options>) (both by value), looked up at run time. Options' size depends on
// the NCCL version libtorch was built with, so it too is built in a larger buffer (and kept for the
// process); the group's first base is c10d::Backend, used through its virtual functions.
ck_error ck_pg_nccl(const char *host, int port, int rank, int world, int store_client_only, int64_t timeout_ms,
                    ck_pg *out) {
  CK_BEGIN
  if (!out) throw std::invalid_argument("null argument");
  auto timeout = std::chrono::milliseconds(timeout_ms);
  auto tcp = tcp_store(host, port, rank, world, store_client_only, timeout);
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>("clipkit/nccl", tcp);
  using OptionsCtor = void (*)(void *, bool);
  using GroupCtor = void (*)(void *, c10::intrusive_ptr<c10d::Store>, int, int, OptionsPtr);
  auto makeOptions = reinterpret_cast<OptionsCtor>(symbol("_ZN4c10d16ProcessGroupNCCL7OptionsC1Eb", "ProcessGroupNCCL::Options"));
  auto makeGroup = reinterpret_cast<GroupCtor>(symbol(
      "_ZN4c10d16ProcessGroupNCCLC1EN3c1013intrusive_ptrINS_5StoreENS1_6detail34intrusive_target_default_null_typeIS3_EEEEiiNS2_"
      "INS0_7OptionsENS5_IS8_EEEE", "ProcessGroupNCCL"));
  void *opt = ::operator new(16384);
  std::memset(opt, 0, 16384);
  makeOptions(opt, false);
  auto options = OptionsPtr::unsafe_steal_from_new(static_cast<c10d::Backend::Options *>(opt));
  c10::raw::intrusive_ptr::incref(options.get());  // never freed through its class-sized delete
  options->timeout = timeout;
  auto *pg = adopt(1 << 16, [&](void *self) { makeGroup(self, store, rank, world, options); }, tcp, rank, world, timeout);
  pg->coalesceP2P = true;
  *out = pg;
  CK_END
}

ck_error ck_pg_gloo(const char *host, int port, int rank, int world, int store_client_only, int64_t timeout_ms,
                    ck_pg *out) {
  CK_BEGIN
  if (!out) throw std::invalid_argument("null argument");
  auto timeout = std::chrono::milliseconds(timeout_ms);
  auto tcp = tcp_store(host, port, rank, world, store_client_only, timeout);
  auto store = c10::make_intrusive<c10d::PrefixStore>("clipkit/gloo", tcp);
  OptionsPtr options = ck_gloo_create_default(timeout);
  options->timeout = timeout;
  // The object is 488 bytes.
  *out = adopt(4096, [&](void *self) { ck_gloo_construct(self, store, rank, world, options); }, tcp, rank, world, timeout);
  CK_END
}

void ck_pg_free(ck_pg pg) {
  if (!pg) return;
  c10d::Backend *raw = pg->backend.get();
  pg->backend.reset();
  // Only the extra reference left: destroy the object in place (virtual complete-object
  // destructor) and free the buffer as it was allocated. Otherwise someone still holds it: leave it.
  if (raw && c10::raw::intrusive_ptr::use_count(raw) == 1) {
    try { raw->~Backend(); } catch (...) {}
    ::operator delete(pg->buffer);
  }
  delete pg;
}

ck_error ck_pg_allreduce(ck_pg pg, const ck_tensor *ts, int64_t n) {
  CK_BEGIN
  auto &g = P(pg);
  std::vector<at::Tensor> v;
  for (int64_t i = 0; i < n; i++) v.push_back(T(ts[i]));
  wait(g.backend->allreduce(v), g);
  CK_END
}

ck_error ck_pg_broadcast(ck_pg pg, ck_tensor t, int root) {
  CK_BEGIN
  auto &g = P(pg);
  std::vector<at::Tensor> v{T(t)};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  wait(g.backend->broadcast(v, o), g);
  CK_END
}

ck_error ck_pg_allgather(ck_pg pg, ck_tensor in, ck_tensor *out) {
  CK_BEGIN
  auto &g = P(pg);
  at::Tensor x = T(in).contiguous();
  auto sizes = x.sizes().vec();
  if (sizes.empty()) throw std::invalid_argument("all_gather needs at least one dimension");
  sizes[0] *= g.size;
  at::Tensor o = at::empty(sizes, x.options());
  wait(g.backend->_allgather_base(o, x), g);
  *out = new ck_tensor_s{o};
  CK_END
}

ck_error ck_pg_barrier(ck_pg pg) {
  CK_BEGIN
  auto &g = P(pg);
  wait(g.backend->barrier(), g);
  CK_END
}

ck_error ck_all_gather_with_grad(ck_pg pg, ck_tensor in, ck_tensor *out) {
  CK_BEGIN
  P(pg);
  *out = new ck_tensor_s{AllGatherWithGrad::apply(T(in), reinterpret_cast<int64_t>(pg))};
  CK_END
}

}  // extern "C"

// ---- gradient averaging overlapped with backward ------------------------------------------------
// DistributedDataParallel's reducer, reduced to what training here needs: parameters are packed,
// in reverse order (gradients arrive roughly last layer first), into flat buckets of about
// `bucket_bytes` per dtype and device. A post-accumulate-grad hook on each parameter copies its
// gradient into its bucket; a full bucket starts its SUM all-reduce at once, while backward goes on.
// Buckets start strictly in bucket order (as DDP's next-bucket rule), so every rank issues the same
// collectives in the same order whatever order its autograd engine finishes them. finish() waits,
// divides by the world size and copies the averages back into the gradients.
//
// A parameter whose gradient accumulates twice in one backward (used inside and outside a
// recomputed block) after its bucket started makes the step "dirty": finish() then waits for the
// started buckets and reduces every bucket again from the final gradients. Graphs are identical on
// every rank, so all ranks take the same path.
namespace {
struct ReducerState;

struct Bucket {
  std::vector<int64_t> members;  // parameter indices
  std::vector<int64_t> offsets;  // each member's start in `flat`
  at::Tensor flat;
  int64_t pending = 0;
  c10::intrusive_ptr<c10d::Work> work;
};

struct ReducerState {
  ck_pg_s *pg;
  std::vector<at::Tensor> params;
  std::vector<int64_t> bucketOf, slotOf;
  std::vector<Bucket> buckets;
  std::vector<char> seen;
  // Parameters that got no gradient in the previous backward (unused ones, e.g. a wrapped model's
  // own logit scale): their buckets do not wait for them, as DDP's find_unused_parameters. If one
  // does get a gradient after its bucket started, the step is re-reduced (dirty).
  std::vector<char> absent;
  std::mutex m;
  bool armed = false, dirty = false;
  size_t nextLaunch = 0;

  void launchReady() {  // with m held
    while (nextLaunch < buckets.size() && buckets[nextLaunch].pending == 0) {
      auto &b = buckets[nextLaunch++];
      std::vector<at::Tensor> v{b.flat};
      b.work = pg->backend->allreduce(v);
    }
  }
  void pack(Bucket &b) {
    for (size_t k = 0; k < b.members.size(); k++) {
      const at::Tensor &p = params[b.members[k]];
      auto slice = b.flat.narrow(0, b.offsets[k], p.numel());
      const at::Tensor &g = p.grad();
      if (g.defined()) slice.copy_(g.reshape(-1)); else slice.zero_();
    }
  }
  void arrived(int64_t i) {
    std::lock_guard<std::mutex> lock(m);
    if (!armed) return;
    Bucket &b = buckets[bucketOf[i]];
    bool wasSeen = seen[i];
    seen[i] = 1;
    if (wasSeen || b.work) { dirty = true; return; }
    at::NoGradGuard ng;
    const at::Tensor &g = params[i].grad();
    auto slice = b.flat.narrow(0, b.offsets[slotOf[i]], params[i].numel());
    if (g.defined()) slice.copy_(g.reshape(-1)); else slice.zero_();
    // A parameter expected to get no gradient was not counted in `pending`.
    if (!absent[i] && --b.pending == 0) launchReady();
  }
};

struct ArrivalHook : torch::autograd::PostAccumulateGradHook {
  std::weak_ptr<ReducerState> state;
  int64_t index;
  ArrivalHook(std::weak_ptr<ReducerState> s, int64_t i) : state(std::move(s)), index(i) {}
  void operator()(const torch::autograd::Variable &) override {
    if (auto s = state.lock()) s->arrived(index);
  }
};
}  // namespace

struct ck_reducer_s { std::shared_ptr<ReducerState> s; };

extern "C" {

int64_t ck_reducer_buckets(ck_reducer r) { return r ? static_cast<int64_t>(r->s->buckets.size()) : 0; }

ck_error ck_reducer_new(ck_pg pg, const ck_tensor *params, int64_t n, int64_t bucket_bytes, ck_reducer *out) {
  CK_BEGIN
  P(pg);
  if (bucket_bytes < 1) throw std::invalid_argument("bucket size must be positive");
  auto s = std::make_shared<ReducerState>();
  s->pg = pg;
  for (int64_t i = 0; i < n; i++) {
    const at::Tensor &p = T(params[i]);
    if (!p.requires_grad() || !p.is_leaf()) throw std::invalid_argument("reducer parameters must be leaves that require grad");
    s->params.push_back(p);
  }
  s->bucketOf.assign(n, -1);
  s->slotOf.assign(n, -1);
  // Reverse order, one open bucket per (dtype, device); a bucket closes once it reaches the size.
  std::vector<std::pair<std::pair<int, std::string>, int64_t>> open;  // key → bucket index
  std::vector<int64_t> bytes;
  for (int64_t i = n - 1; i >= 0; i--) {
    const at::Tensor &p = s->params[i];
    auto key = std::make_pair(static_cast<int>(p.scalar_type()), p.device().str());
    int64_t bi = -1;
    for (auto &o : open) if (o.first == key) bi = o.second;
    if (bi < 0 || bytes[bi] >= bucket_bytes) {
      bi = static_cast<int64_t>(s->buckets.size());
      s->buckets.emplace_back();
      bytes.push_back(0);
      bool found = false;
      for (auto &o : open) if (o.first == key) { o.second = bi; found = true; }
      if (!found) open.push_back({key, bi});
    }
    Bucket &b = s->buckets[bi];
    s->bucketOf[i] = bi;
    s->slotOf[i] = static_cast<int64_t>(b.members.size());
    b.offsets.push_back(b.members.empty() ? 0 : b.offsets.back() + s->params[b.members.back()].numel());
    b.members.push_back(i);
    bytes[bi] += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (auto &b : s->buckets) {
    const at::Tensor &last = s->params[b.members.back()];
    b.flat = at::empty({b.offsets.back() + last.numel()}, last.options().requires_grad(false));
  }
  s->seen.assign(n, 0);
  s->absent.assign(n, 0);
  for (int64_t i = 0; i < n; i++)
    torch::autograd::impl::set_post_acc_grad_hooks(s->params[i], std::make_unique<ArrivalHook>(s, i));
  *out = new ck_reducer_s{s};
  CK_END
}

// Arms the hooks for the next backward.
ck_error ck_reducer_prepare(ck_reducer r) {
  CK_BEGIN
  if (!r) throw std::invalid_argument("null reducer");
  auto &s = *r->s;
  std::lock_guard<std::mutex> lock(s.m);
  at::NoGradGuard ng;
  for (auto &b : s.buckets) {
    if (b.work) { try { b.work->wait(s.pg->timeout); } catch (...) {} }  // left by a step that failed
    b.work.reset();
    b.pending = 0;
    for (size_t k = 0; k < b.members.size(); k++) {
      if (!s.absent[b.members[k]]) { b.pending++; continue; }
      b.flat.narrow(0, b.offsets[k], s.params[b.members[k]].numel()).zero_();
    }
  }
  std::fill(s.seen.begin(), s.seen.end(), 0);
  s.nextLaunch = 0;
  s.dirty = false;
  s.armed = true;
  CK_END
}

// After backward: starts the buckets still waiting (parameters that got no gradient count as
// zeros and keep no gradient), waits for all, and writes the averages into the gradients.
// *redone = 1 when the step was dirty and every bucket was reduced again;
// *started_during_backward = how many buckets backward had already started.
ck_error ck_reducer_finish(ck_reducer r, int *redone, int64_t *started_during_backward) {
  CK_BEGIN
  if (!r) throw std::invalid_argument("null reducer");
  auto &s = *r->s;
  std::lock_guard<std::mutex> lock(s.m);
  if (!s.armed) throw std::logic_error("reducer finish() without prepare()");
  s.armed = false;
  if (started_during_backward) *started_during_backward = static_cast<int64_t>(s.nextLaunch);
  at::NoGradGuard ng;
  for (auto &b : s.buckets) {
    if (!b.work && b.pending > 0) {
      for (size_t k = 0; k < b.members.size(); k++) {
        if (s.seen[b.members[k]]) continue;
        const at::Tensor &g = s.params[b.members[k]].grad();
        auto slice = b.flat.narrow(0, b.offsets[k], s.params[b.members[k]].numel());
        if (g.defined()) slice.copy_(g.reshape(-1)); else slice.zero_();
      }
      b.pending = 0;
    }
  }
  s.launchReady();
  for (size_t i = 0; i < s.params.size(); i++) s.absent[i] = s.seen[i] ? 0 : 1;
  for (auto &b : s.buckets) wait(b.work, *s.pg);
  if (redone) *redone = s.dirty ? 1 : 0;
  if (s.dirty) {
    for (auto &b : s.buckets) {
      s.pack(b);
      std::vector<at::Tensor> v{b.flat};
      b.work = s.pg->backend->allreduce(v);
    }
    for (auto &b : s.buckets) wait(b.work, *s.pg);
  }
  for (auto &b : s.buckets) {
    b.work.reset();
    b.flat.div_(s.pg->size);
    for (size_t k = 0; k < b.members.size(); k++) {
      at::Tensor &p = s.params[b.members[k]];
      if (!p.grad().defined()) continue;
      p.mutable_grad().copy_(b.flat.narrow(0, b.offsets[k], p.numel()).view(p.grad().sizes()));
    }
  }
  CK_END
}

void ck_reducer_free(ck_reducer r) {
  if (!r) return;
  try {
    for (auto &p : r->s->params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  } catch (...) {}
  delete r;
}

}  // extern "C"

// Activation checkpointing: run a block without keeping its activations, and run it again with
// gradients on during the backward pass (PyTorch's reentrant torch.utils.checkpoint). The block is
// a C callback into Swift. Kept apart from ctorch.cpp because the autograd headers are heavy.
#include "shim.hpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstdlib>
#include <mutex>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

at::Tensor call_block(ck_block_fn fn, void *ctx, const at::Tensor &x) {
  ck_tensor_s in{x};
  ck_tensor out = nullptr;
  ck_error err = fn(ctx, &in, &out);
  if (err) {
    std::string m(err);
    std::free(err);
    throw std::runtime_error(m);
  }
  if (!out) throw std::runtime_error("checkpointed block returned no tensor");
  at::Tensor y = out->t;
  delete out;
  return y;
}

// The recomputation must run under the autocast state of the forward pass (as
// torch.utils.checkpoint does): backward() runs outside the caller's autocast scope, and on GPUs on
// the autograd engine's own thread.
const at::DeviceType kAutocastDevices[] = {at::kCPU, at::kCUDA};

struct AutocastAs {
  bool was[2];
  at::ScalarType wasType[2];
  AutocastAs(torch::autograd::AutogradContext *c) {
    for (int i = 0; i < 2; i++) {
      auto d = kAutocastDevices[i];
      was[i] = at::autocast::is_autocast_enabled(d);
      wasType[i] = at::autocast::get_autocast_dtype(d);
      std::string k = std::to_string(i);
      at::autocast::set_autocast_dtype(d, static_cast<at::ScalarType>(c->saved_data["ac_type" + k].toInt()));
      at::autocast::set_autocast_enabled(d, c->saved_data["ac_on" + k].toBool());
    }
    at::autocast::increment_nesting();
  }
  ~AutocastAs() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    for (int i = 0; i < 2; i++) {
      at::autocast::set_autocast_enabled(kAutocastDevices[i], was[i]);
      at::autocast::set_autocast_dtype(kAutocastDevices[i], wasType[i]);
    }
  }
};

// The recomputation draws the same random numbers as the forward pass (stochastic depth,
// dropout), as torch.utils.checkpoint's preserve_rng_state: the default generator of the input's
// device is saved before the forward and put back around the recomputation.
struct RNGAs {
  at::Generator gen;
  at::Tensor was;
  RNGAs(const at::Generator &g, const at::Tensor &state) : gen(g) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    was = gen.get_state();
    gen.set_state(state);
  }
  ~RNGAs() {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(was);
  }
};
at::Generator defaultGenerator(const at::Tensor &x) {
  return at::globalContext().defaultGenerator(x.device());
}

struct CheckpointBlock : public torch::autograd::Function<CheckpointBlock> {
  static at::Tensor forward(torch::autograd::AutogradContext *c, at::Tensor x, int64_t fn, int64_t ctx) {
    {
      auto g = defaultGenerator(x);
      std::lock_guard<std::mutex> lock(g.mutex());
      c->saved_data["rng"] = g.get_state();
    }
    c->save_for_backward({x});
    c->saved_data["fn"] = fn;
    c->saved_data["ctx"] = ctx;
    for (int i = 0; i < 2; i++) {
      std::string k = std::to_string(i);
      c->saved_data["ac_on" + k] = at::autocast::is_autocast_enabled(kAutocastDevices[i]);
      c->saved_data["ac_type" + k] = static_cast<int64_t>(at::autocast::get_autocast_dtype(kAutocastDevices[i]));
    }
    at::NoGradGuard no_grad;
    return call_block(reinterpret_cast<ck_block_fn>(fn), reinterpret_cast<void *>(ctx), x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *c,
                                                 torch::autograd::variable_list grads) {
    auto fn = reinterpret_cast<ck_block_fn>(c->saved_data["fn"].toInt());
    auto ctx = reinterpret_cast<void *>(c->saved_data["ctx"].toInt());
    at::Tensor x = c->get_saved_variables()[0].detach();
    bool needs = x.is_floating_point();
    if (needs) x.set_requires_grad(true);
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      AutocastAs scope(c);
      RNGAs rng(defaultGenerator(x), c->saved_data["rng"].toTensor());
      y = call_block(fn, ctx, x);
    }
    // Re-entrant backward: parameters inside the block receive their gradients here.
    torch::autograd::backward({y}, {grads[0]});
    return {needs ? x.grad() : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" ck_error ck_checkpoint(ck_block_fn fn, void *ctx, ck_tensor input, ck_tensor *out) {
  CK_BEGIN
  at::Tensor y = CheckpointBlock::apply(ck::T(input), reinterpret_cast<int64_t>(fn), reinterpret_cast<int64_t>(ctx));
  ck::put(out, y);
  CK_END
}

import Foundation

// A module tree whose dotted names are the checkpoint keys. A module declares its tensors and
// submodules with property wrappers that carry the key, so the Swift declaration *is* the
// state-dict schema:
//
//   final class MLP: Module {
//     @Child("fc1") var fc1: Linear
//     @Child("fc2") var fc2: Linear
//   }
//
// Arrays of modules get numbered keys (`layers.0`, `layers.1`, …); optional ones may be absent.

/// What a `@Param`/`@Buffer` wrapper exposes to the tree walker.
public protocol TensorSlot: AnyObject {
  var key: String { get }
  var isBuffer: Bool { get }
  /// Whether the tensor belongs in the state dict (non-persistent buffers do not).
  var persistent: Bool { get }
  var tensor: Tensor? { get }
  func replace(_ t: Tensor)
}

/// What a `@Child` wrapper exposes: its submodules with their key suffixes.
public protocol ChildSlot: AnyObject {
  var key: String { get }
  var modules: [(String, Module)] { get }
}

/// Values a `@Param` may hold: a tensor, or an optional tensor (for example a bias).
public protocol TensorSlotValue {
  var slotTensor: Tensor? { get }
  static func fromSlot(_ t: Tensor) -> Self
}
extension Tensor: TensorSlotValue {
  public var slotTensor: Tensor? { self }
  public static func fromSlot(_ t: Tensor) -> Self { t as! Self }
}
extension Optional: TensorSlotValue where Wrapped == Tensor {
  public var slotTensor: Tensor? { self }
  public static func fromSlot(_ t: Tensor) -> Self { .some(t) }
}

/// A trainable tensor with its checkpoint key. Declared without a value; the module's init
/// assigns it after `super.init()`:
///
///   @Param("weight") var weight: Tensor
@propertyWrapper
public final class Param<Value: TensorSlotValue>: TensorSlot {
  /// Changes only when a layer takes another layout (LoRA moves a Linear's weight under `original.`).
  public internal(set) var key: String
  private var storage: Value?
  public var wrappedValue: Value {
    get {
      guard let storage else { fatalError("parameter '\(key)' read before its module assigned it") }
      return storage
    }
    set {
      // A parameter's first value becomes a leaf that wants gradients, as nn.Parameter.
      if storage == nil, let t = newValue.slotTensor, t.dtype.isFloatingPoint, !t.requiresGrad {
        _ = try? t.requiresGrad(true)
      }
      storage = newValue
    }
  }
  public var isBuffer: Bool { false }
  public var persistent: Bool { true }
  public var tensor: Tensor? { storage?.slotTensor }
  public func replace(_ t: Tensor) { storage = .fromSlot(t) }

  public init(_ key: String) { self.key = key }
}

/// A non-trainable tensor (for example fixed position ids); `persistent: false` keeps it out of
/// the state dict, as PyTorch's register_buffer(persistent=False).
@propertyWrapper
public final class Buffer<Value: TensorSlotValue>: TensorSlot {
  public let key: String
  public let persistent: Bool
  private var storage: Value?
  public var wrappedValue: Value {
    get {
      guard let storage else { fatalError("buffer '\(key)' read before its module assigned it") }
      return storage
    }
    set { storage = newValue }
  }
  public var isBuffer: Bool { true }
  public var tensor: Tensor? { storage?.slotTensor }
  public func replace(_ t: Tensor) { storage = .fromSlot(t) }

  public init(_ key: String, persistent: Bool = true) {
    self.key = key
    self.persistent = persistent
  }
}

/// Tensors under keys known only when a checkpoint is read (weights a model carries for the
/// checkpoint's sake but never computes with, such as RADIO's dense-feature head). A module
/// stores one as a plain property; its slots join the module's own.
public final class TensorBag {
  public private(set) var slots: [TensorSlot] = []
  public init() {}
  /// Adds `tensors` (key → tensor) as parameters (trainable leaves) or buffers, keys sorted.
  public init(_ tensors: [String: Tensor], buffers: Bool) {
    for (k, t) in tensors.sorted(by: { $0.key < $1.key }) {
      if buffers {
        let b = Buffer<Tensor>(k)
        b.wrappedValue = t
        slots.append(b)
      } else {
        let p = Param<Tensor>(k)
        p.wrappedValue = t
        slots.append(p)
      }
    }
  }
}

/// Values a `@Child` may hold: a module, an array of modules, or an optional module.
public protocol ChildValue {
  var childModules: [(String, Module)] { get }
}
extension Module: ChildValue {
  public var childModules: [(String, Module)] { [("", self)] }
}
extension Array: ChildValue where Element: Module {
  public var childModules: [(String, Module)] { enumerated().map { ("\($0.offset)", $0.element) } }
}
extension Optional: ChildValue where Wrapped: Module {
  public var childModules: [(String, Module)] { map { [("", $0)] } ?? [] }
}
/// Submodules under keys known only at run time (`adaptors.siglip2-g`), in order.
public struct NamedModules<M: Module>: ChildValue {
  public var items: [(String, M)]
  public init(_ items: [(String, M)]) { self.items = items }
  public var childModules: [(String, Module)] { items.map { ($0.0, $0.1) } }
}

@propertyWrapper
public final class Child<Value: ChildValue>: ChildSlot {
  public let key: String
  private var storage: Value?
  public var wrappedValue: Value {
    get {
      guard let storage else { fatalError("submodule '\(key)' read before its module assigned it") }
      return storage
    }
    set { storage = newValue }
  }
  public var modules: [(String, Module)] {
    (storage?.childModules ?? []).map { ($0.0.isEmpty ? key : "\(key).\($0.0)", $0.1) }
  }
  public init(_ key: String) { self.key = key }
}

open class Module {
  /// Training mode (dropout etc.); set for the whole tree with `train(_:)`.
  public private(set) var isTraining = true

  public init() {}

  /// Wrappers of this module, superclass declarations first, each in declaration order.
  private func slots() -> (tensors: [TensorSlot], children: [ChildSlot]) {
    var mirrors: [Mirror] = []
    var m: Mirror? = Mirror(reflecting: self)
    while let current = m {
      mirrors.append(current)
      m = current.superclassMirror
    }
    var tensors: [TensorSlot] = [], children: [ChildSlot] = []
    for mirror in mirrors.reversed() {
      for c in mirror.children {
        if let t = c.value as? TensorSlot { tensors.append(t) }
        else if let ch = c.value as? ChildSlot { children.append(ch) }
        else if let bag = c.value as? TensorBag { tensors += bag.slots }
      }
    }
    return (tensors, children)
  }

  /// Direct submodules with their keys.
  public func namedChildren() -> [(String, Module)] { slots().children.flatMap { $0.modules } }

  /// Every tensor slot in the tree, depth first, with full dotted keys.
  public func namedSlots(prefix: String = "") -> [(String, TensorSlot)] {
    let (tensors, children) = slots()
    var out: [(String, TensorSlot)] = tensors.map { (prefix + $0.key, $0) }
    for slot in children {
      for (key, child) in slot.modules { out += child.namedSlots(prefix: prefix + key + ".") }
    }
    return out
  }

  /// Trainable parameters (present ones) with full dotted keys.
  public func namedParameters() -> [(String, Tensor)] {
    namedSlots().compactMap { key, slot in slot.isBuffer ? nil : slot.tensor.map { (key, $0) } }
  }
  public func parameters() -> [Tensor] { namedParameters().map { $0.1 } }

  /// Parameters and persistent buffers: what a checkpoint holds.
  public func stateDict() -> [(String, Tensor)] {
    namedSlots().compactMap { key, slot in slot.persistent ? slot.tensor.map { (key, $0) } : nil }
  }

  /// Where the tree's tensors live (its first tensor's device; CPU for a tree without tensors).
  public var device: Device { namedSlots().lazy.compactMap { $0.1.tensor?.device }.first ?? .cpu }

  /// Sets training mode on the whole tree.
  public func train(_ on: Bool = true) {
    isTraining = on
    for (_, c) in namedChildren() { c.train(on) }
  }
  public func eval() { train(false) }

  /// Sets requires_grad on every parameter of the tree (freezing a tower).
  public func setRequiresGrad(_ flag: Bool) throws {
    for (_, p) in namedParameters() { try p.requiresGrad(flag) }
  }

  /// Moves/casts every tensor of the tree (floating-point tensors only change dtype).
  public func to(device: Device, dtype: DType? = nil) throws {
    for (_, slot) in namedSlots() {
      guard let t = slot.tensor else { continue }
      let target = t.dtype.isFloatingPoint ? (dtype ?? t.dtype) : t.dtype
      if t.device == device && t.dtype == target { continue }
      let moved = try noGrad { try t.to(target, device: device) }
      if t.requiresGrad { try moved.requiresGrad(true) }
      slot.replace(moved)
    }
  }
}

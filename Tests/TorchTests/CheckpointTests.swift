import Foundation
import Testing
@testable import Torch

@Suite struct PyTorchCheckpoints {
  @Test func readsWhatTorchSaveWrote() throws {
    let ckpt = try PyTorchCheckpoint.read(Fixture.path("tao_style.pth"))
    let tensors = try ckpt.tensors
    let expected = try Safetensors.read(Fixture.path("tao_style_expected.safetensors")).dictionary
    #expect(Set(tensors.keys) == Set(expected.keys))
    for (k, e) in expected {
      let t = tensors[k]!
      #expect(t.dtype == e.dtype && t.shape == e.shape, "\(k)")
      #expect(try t.contiguous().bytes() == e.bytes(), "\(k)")
    }
    guard case .dict(let top) = ckpt.root else { Issue.record("top is not a dict"); return }
    #expect(top["epoch"]?.intValue == 3 && top["global_step"]?.intValue == 120)
    #expect(top["name"]?.stringValue == "clip")
    if case .list(let opt)? = top["optimizer_states"], case .dict(let first) = opt.items[0], case .list(let groups)? = first["param_groups"],
       case .dict(let g) = groups.items[0], case .float(let lr)? = g["lr"] {
      #expect(lr == 1e-4)
    } else {
      Issue.record("optimizer_states not read")
    }
  }

  @Test func refusesPicklesThatCallAnything() throws {
    try? FileManager.default.removeItem(atPath: "/tmp/clipkit_pwned")
    for (name, global) in [("malicious.pth", "posix.system"), ("malicious_builtins.pth", "builtins.eval")] {
      do {
        _ = try PyTorchCheckpoint.read(Fixture.path(name))
        Issue.record("\(name) was accepted")
      } catch {
        let m = error.localizedDescription
        #expect(m.contains("refused") && m.contains(global) && m.contains(name), "\(m)")
      }
    }
    #expect(!FileManager.default.fileExists(atPath: "/tmp/clipkit_pwned"))
  }

  @Test func truncatedAndForeignFilesAreNamedErrors() throws {
    for (name, fragment) in [("truncated.pth", "truncated.pth"), ("python_written.safetensors", "not a zip-format")] {
      do {
        _ = try PyTorchCheckpoint.read(Fixture.path(name))
        Issue.record("\(name) accepted")
      } catch {
        #expect(error.localizedDescription.contains(fragment), "\(error.localizedDescription)")
      }
    }
  }
}

@Suite struct CheckpointWriting {
  @Test func writtenCheckpointsReadBack() throws {
    let path = NSTemporaryDirectory() + "ck-\(UUID().uuidString).pth"
    let w = try Tensor.randn([3, 4])
    let h = try Tensor.randn([5]).to(.bfloat16)
    let root = PickleOut.dict([
      (.string("state_dict"), .dict([(.string("model.w"), .tensor(w)), (.string("model.h"), .tensor(h)),
                                      (.string("model.t"), .tensor(try w.transpose(0, 1)))], ordered: true)),
      (.string("epoch"), .int(7)), (.string("global_step"), .int(70_000)), (.string("lr"), .float(1e-4)),
      (.string("betas"), .tuple([.float(0.9), .float(0.95)])), (.string("flags"), .list([.bool(true), .none])),
      (.string("state"), .dict([(.int(0), .dict([(.string("step"), .tensor(try Tensor.scalar(Float(3))))], ordered: false))], ordered: false)),
    ], ordered: false)
    try PyTorchCheckpointWriter.write(root, to: path)
    let back = try PyTorchCheckpoint.read(path)
    let t = try back.tensors
    #expect(try t["model.w"]!.floats() == w.floats())
    #expect(try t["model.h"]!.bytes() == h.bytes())
    #expect(try t["model.t"]!.floats() == w.transpose(0, 1).contiguous().floats())
    guard case .dict(let top) = back.root else { Issue.record("not a dict"); return }
    #expect(top["epoch"]?.intValue == 7 && top["global_step"]?.intValue == 70_000)
    if case .float(let lr)? = top["lr"] { #expect(lr == 1e-4) } else { Issue.record("lr") }
    // No temporary file is left beside it.
    let dir = (path as NSString).deletingLastPathComponent
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }.isEmpty)
  }
}

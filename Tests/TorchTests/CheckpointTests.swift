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

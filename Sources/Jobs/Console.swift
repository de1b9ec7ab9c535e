@preconcurrency import Glibc
import Foundation

/// Where a job's lines go: the process's stdout/stderr for the command line, or a caller's sink
/// (tests run jobs in-process and read what they printed).
public final class Console: @unchecked Sendable {
  let out: @Sendable (String) -> Void
  let err: @Sendable (String) -> Void
  /// Whether stderr is a terminal (progress draws a bar there, else plain periodic lines).
  let isTerminal: Bool

  public init(out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void, isTerminal: Bool = false) {
    self.out = out
    self.err = err
    self.isTerminal = isTerminal
  }

  public static let standard = Console(
    out: { s in fputs(s, stdout) },
    err: { s in FileHandle.standardError.write(Data(s.utf8)) },
    isTerminal: isatty(2) != 0)

  /// The console of the job running on this task (jobs run synchronously, so every line a job
  /// prints from its own thread sees the value its caller bound).
  @TaskLocal public static var current: Console = .standard
}

/// Collects a job's output in memory (what tests read).
public final class CapturedConsole: @unchecked Sendable {
  private let lock = NSLock()
  private var outText = "", errText = ""
  public init() {}
  public var console: Console {
    Console(out: { [self] s in lock.withLock { outText += s } }, err: { [self] s in lock.withLock { errText += s } })
  }
  public var out: String { lock.withLock { outText } }
  public var err: String { lock.withLock { errText } }
}

// Jobs print through the bound console. This module-level `print` shadows the standard one for
// every file of the module, so job code reads like ordinary Swift.
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
  Console.current.out(items.map { "\($0)" }.joined(separator: separator) + terminator)
}

func warn(_ message: String) { Console.current.err("warning: \(message)\n") }

/// An error as one line (what the command line prints after "error: ", and status.json records).
public func oneLine(_ error: Error) -> String {
  let text = (error as? LocalizedError)?.errorDescription ?? "\(error)"
  return text.split(whereSeparator: \.isNewline).joined(separator: " ")
}

public enum ClipKitVersion {
  public static let string = "0.1.0"
}

/// JSON text with object keys in the order given (JSONSerialization sorts or shuffles them): what
/// the command line's `--json` lines and the server's responses print. Values: String, Int, Float
/// (shortest round-trip digits), Double, nested `[(String, Any)]` objects, arrays of those; anything
/// else is null.
public enum OrderedJSON {
  public static func string(_ s: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
  }

  public static func object(_ pairs: [(String, Any)]) -> String {
    "{" + pairs.map { "\(string($0.0)): \(value($0.1))" }.joined(separator: ", ") + "}"
  }

  public static func value(_ v: Any) -> String {
    switch v {
    case let s as String: return string(s)
    case let i as Int: return String(i)
    case let f as Float: return f.isFinite ? "\(f)" : "null"
    case let d as Double: return d.isFinite ? "\(d)" : "null"
    case let p as [(String, Any)]: return object(p)
    case let a as [Any]: return "[" + a.map(value).joined(separator: ", ") + "]"
    default: return "null"
    }
  }
}

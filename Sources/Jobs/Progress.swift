import Foundation

/// Progress for long work: a bar with rate and ETA on a terminal, a plain line every few seconds
/// otherwise (logs, CI).
final class Progress {
  private let console = Console.current
  let label: String
  let total: Int
  let unit: String
  private var done = 0
  private let start = Date()
  private var lastPrint = Date.distantPast
  private lazy var tty = console.isTerminal

  init(_ label: String, total: Int, unit: String = "items") {
    self.label = label
    self.total = total
    self.unit = unit
  }

  func advance(_ n: Int = 1) {
    done += n
    let now = Date()
    let interval: TimeInterval = tty ? 0.2 : 10
    if now.timeIntervalSince(lastPrint) >= interval || done >= total {
      lastPrint = now
      render(now)
    }
  }

  private func render(_ now: Date) {
    let elapsed = max(now.timeIntervalSince(start), 1e-9)
    let rate = Double(done) / elapsed
    let eta = rate > 0 ? Double(total - done) / rate : 0
    let stats = String(format: "%d/%d %@ %.1f %@/s ETA %@", done, total, "", rate, unit, Progress.duration(eta))
      .replacingOccurrences(of: "  ", with: " ")
    if tty {
      let width = 30
      let filled = total > 0 ? min(width, width * done / total) : width
      let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
      console.err("\r\(label) [\(bar)] \(stats)\u{1B}[K")
      if done >= total { console.err("\n") }
    } else {
      console.err("\(label): \(stats)\n")
    }
  }

  static func duration(_ s: Double) -> String {
    let t = Int(s.rounded())
    return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
  }
}

import Foundation

/// Image reads from remote shards during an epoch. Each shard has one forward-moving stream; a
/// request for a member further on reads up to it, keeping the members it passes that this epoch
/// still wants (the shuffle buffer asks for them soon, as webdataset's buffer holds them), and
/// dropping the rest. A member behind the stream that was not kept (or a long gap ahead) costs a
/// new Range request. Kept bytes are capped (CLIPKIT_REMOTE_READAHEAD_MB, default 1024).
public final class RemoteReads: @unchecked Sendable {
  public static let shared = RemoteReads()

  final class Cursor {
    let lock = NSLock()
    var stream: ShardByteStream?
    var ahead: [UInt64: [UInt8]] = [:]
    /// This epoch's wanted members of the shard, by offset (sorted), and which are still unread.
    var planned: [(offset: UInt64, size: Int)] = []
    var unread: Set<UInt64> = []
  }

  private let lock = NSLock()
  private var cursors: [String: Cursor] = [:]
  private var keptBytes = 0
  let capBytes: Int
  init(capBytes: Int = (Int(ProcessInfo.processInfo.environment["CLIPKIT_REMOTE_READAHEAD_MB"] ?? "") ?? 1024) << 20) {
    self.capBytes = capBytes
  }
  /// A gap longer than this is crossed with a new Range request rather than read and dropped.
  let reopenGap: UInt64 = 8 << 20
  /// Requests opened (first and re-opened streams), for the tests and the benchmark.
  public private(set) var opened = 0

  /// Starts an epoch: every stream is closed, and `sources` (in any order) are the reads to come.
  public func plan(_ sources: [ImageSource]) {
    lock.lock()
    defer { lock.unlock() }
    for c in cursors.values { c.stream?.close() }
    cursors = [:]
    keptBytes = 0
    for s in sources {
      guard case .member(let shard, let offset, let size, _) = s, ShardLocation.isRemote(shard) else { continue }
      let c = cursors[shard] ?? Cursor()
      cursors[shard] = c
      c.planned.append((offset, size))
      c.unread.insert(offset)
    }
    for c in cursors.values { c.planned.sort { $0.offset < $1.offset } }
  }

  private func cursor(_ shard: String) -> Cursor {
    lock.lock()
    defer { lock.unlock() }
    if let c = cursors[shard] { return c }
    let c = Cursor()
    cursors[shard] = c
    return c
  }

  private func keep(_ n: Int) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    guard keptBytes + n <= capBytes else { return false }
    keptBytes += n
    return true
  }

  private func release(_ n: Int) {
    lock.lock()
    keptBytes -= n
    lock.unlock()
  }

  private func open(_ shard: String, at offset: UInt64, _ c: Cursor) throws -> ShardByteStream {
    c.stream?.close()
    let s = try ShardStreams.open(shard, offset: offset)
    c.stream = s
    lock.lock()
    opened += 1
    lock.unlock()
    return s
  }

  public func read(shard: String, offset: UInt64, size: Int, name: String) throws -> [UInt8] {
    let c = cursor(shard)
    c.lock.lock()
    defer { c.lock.unlock() }
    c.unread.remove(offset)
    if let kept = c.ahead.removeValue(forKey: offset) {
      release(kept.count)
      return kept
    }
    do {
      var s = c.stream
      if s == nil {
        // A fresh stream starts at the first member still wanted (the ones before this one will be asked for too).
        let first = c.planned.first { c.unread.contains($0.offset) && c.ahead[$0.offset] == nil }.map { min($0.offset, offset) } ?? offset
        s = try open(shard, at: first, c)
      } else if s!.position > offset {
        s = try open(shard, at: offset, c)
      }
      var stream = s!
      // Forward to the member, keeping the wanted ones passed on the way; a stretch of nothing
      // wanted longer than reopenGap is jumped with a new Range request (pipes read through it).
      var i = c.planned.partitionIndex { $0.offset >= stream.position }
      while stream.position < offset {
        // (a member kept already, read again after a jump back, is not kept twice)
        while i < c.planned.count && (c.planned[i].offset < stream.position || !c.unread.contains(c.planned[i].offset)
                                      || c.ahead[c.planned[i].offset] != nil) { i += 1 }
        let member = i < c.planned.count && c.planned[i].offset < offset ? c.planned[i] : nil
        let dest = member?.offset ?? offset
        if dest - stream.position > reopenGap && !(stream is PipeStream) {
          stream = try open(shard, at: dest, c)
        } else if try !stream.skip(dest - stream.position) {
          break
        }
        guard let m = member else { break }
        i += 1
        let bytes = try stream.readFully(m.size)
        guard bytes.count == m.size else { break }
        if keep(m.size) { c.ahead[m.offset] = bytes }
      }
      let bytes = stream.position == offset ? try stream.readFully(size) : []
      guard bytes.count == size else {
        c.stream?.close(); c.stream = nil
        throw DataError.input("\(ShardLocation.display(shard)): member \(name) is truncated")
      }
      return bytes
    } catch {
      c.stream?.close()
      c.stream = nil
      throw error
    }
  }
}

extension Array {
  /// The first index whose element satisfies `pred` (false…false true…true order), by bisection.
  func partitionIndex(where pred: (Element) -> Bool) -> Int {
    var (lo, hi) = (0, count)
    while lo < hi {
      let mid = (lo + hi) / 2
      if pred(self[mid]) { hi = mid } else { lo = mid + 1 }
    }
    return lo
  }
}

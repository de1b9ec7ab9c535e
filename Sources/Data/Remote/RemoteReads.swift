import Foundation

/// Image reads from remote shards during an epoch. Each shard has one forward-moving stream; a
/// request for a member further on reads up to it, keeping the members it passes that this epoch
/// still wants (the shuffle buffer asks for them soon, as webdataset's buffer holds them), and
/// dropping the rest. A member behind the stream that was not kept (or a long gap ahead) costs a
/// new Range request. Kept bytes are capped (CLIPKIT_REMOTE_READAHEAD_MB, default 1024).
///
/// An epoch reads its shards one after another (the shuffle buffer fills from one shard stream),
/// so one connection would bound it: background streams (CLIPKIT_REMOTE_STREAMS, default 4) read
/// the next shards in the order the epoch needs them, keeping their members while the kept bytes
/// stay under three quarters of the cap (the rest is room for the loaders' own reads).
public final class RemoteReads: @unchecked Sendable {
  public static let shared = RemoteReads()

  final class Cursor {
    let lock = NSLock()
    /// The plan it belongs to: its keeps count only while that plan is current.
    let epoch: Int
    init(epoch: Int) { self.epoch = epoch }
    var stream: ShardByteStream?
    var ahead: [UInt64: [UInt8]] = [:]
    /// This epoch's wanted members of the shard, by offset (sorted), and which are still unread.
    var planned: [(offset: UInt64, size: Int)] = []
    var unread: Set<UInt64> = []
  }

  /// Guards the cursors, the kept-bytes count and the epoch; background streams wait on it for room.
  private let state = NSCondition()
  private var cursors: [String: Cursor] = [:]
  private var keptBytes = 0
  /// Bumped by `plan`: background streams of an earlier epoch stop.
  private var epoch = 0
  /// Shards in the order the epoch first needs them, and the next one for a background stream.
  private var queue: [String] = []
  private var queued = 0
  let capBytes: Int
  let streams: Int
  init(capBytes: Int = (Int(ProcessInfo.processInfo.environment["CLIPKIT_REMOTE_READAHEAD_MB"] ?? "") ?? 1024) << 20,
       streams: Int = Int(ProcessInfo.processInfo.environment["CLIPKIT_REMOTE_STREAMS"] ?? "") ?? 4) {
    self.capBytes = capBytes
    self.streams = max(0, streams)
  }
  /// A gap longer than this is crossed with a new Range request rather than read and dropped.
  let reopenGap: UInt64 = 8 << 20
  /// Requests opened (first and re-opened streams), for the tests and the benchmark.
  public private(set) var opened = 0

  /// Starts an epoch: every stream is closed, and `sources`, in the order they will be read (any
  /// order works; this one is streamed ahead), are the reads to come.
  public func plan(_ sources: [ImageSource]) {
    state.lock()
    epoch += 1
    let old = cursors
    cursors = [:]
    keptBytes = 0
    queue = []
    queued = 0
    for s in sources {
      guard case .member(let shard, let offset, let size, _) = s, ShardLocation.isRemote(shard) else { continue }
      let c = cursors[shard] ?? Cursor(epoch: epoch)
      if cursors[shard] == nil { cursors[shard] = c; queue.append(shard) }
      c.planned.append((offset, size))
      c.unread.insert(offset)
    }
    for c in cursors.values { c.planned.sort { $0.offset < $1.offset } }
    let current = epoch
    state.broadcast()
    state.unlock()
    for c in old.values { c.lock.withLock { c.stream?.close(); c.stream = nil } }
    for _ in 0..<min(streams, queue.count) {
      let t = Thread { [self] in streamAhead(epoch: current) }
      t.name = "clipkit-shard-stream"
      t.start()
    }
  }

  private func cursor(_ shard: String) -> Cursor {
    state.withLock {
      if let c = cursors[shard] { return c }
      let c = Cursor(epoch: epoch)
      cursors[shard] = c
      return c
    }
  }

  private func keep(_ n: Int, for c: Cursor) -> Bool {
    state.withLock {
      guard c.epoch == epoch, keptBytes + n <= capBytes else { return false }
      keptBytes += n
      return true
    }
  }

  private func release(_ n: Int, for c: Cursor) {
    state.withLock {
      guard c.epoch == epoch else { return }  // (a new plan zeroed the count)
      keptBytes -= n
      state.broadcast()
    }
  }

  private func open(_ shard: String, at offset: UInt64, _ c: Cursor) throws -> ShardByteStream {
    c.stream?.close()
    let s = try ShardStreams.open(shard, offset: offset)
    c.stream = s
    state.withLock { opened += 1 }
    return s
  }

  public func read(shard: String, offset: UInt64, size: Int, name: String) throws -> [UInt8] {
    let c = cursor(shard)
    c.lock.lock()
    defer { c.lock.unlock() }
    c.unread.remove(offset)
    if let kept = c.ahead.removeValue(forKey: offset) {
      release(kept.count, for: c)
      return kept
    }
    return try fetch(c, shard: shard, offset: offset, size: size, name: name)
  }

  /// Reads a member from the shard's stream (opening or re-opening it as needed), keeping the
  /// wanted members passed on the way. Called with `c.lock` held.
  private func fetch(_ c: Cursor, shard: String, offset: UInt64, size: Int, name: String) throws -> [UInt8] {
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
        if keep(m.size, for: c) { c.ahead[m.offset] = bytes }
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

  /// A background stream: takes the epoch's next shard and keeps its wanted members, member by
  /// member (a loader that wants one of them meanwhile takes the cursor in between), until none
  /// is left; then the next shard. It waits while the kept bytes are over its share of the cap and
  /// leaves a shard on an error (the loader's own read retries and reports it).
  private func streamAhead(epoch current: Int) {
    let share = capBytes / 4 * 3
    while true {
      let next: (String, Cursor)? = state.withLock {
        guard epoch == current, queued < queue.count else { return nil }
        queued += 1
        return cursors[queue[queued - 1]].map { (queue[queued - 1], $0) }
      }
      guard let (shard, c) = next else { return }
      var tooLarge = Set<UInt64>()  // members larger than the share: left to the loaders
      while true {
        c.lock.lock()
        defer { c.lock.unlock() }
        let from = c.stream?.position ?? 0
        let start = c.planned.partitionIndex { $0.offset >= from }
        guard let m = c.planned[start...].first(where: { c.unread.contains($0.offset) && c.ahead[$0.offset] == nil && !tooLarge.contains($0.offset) })
        else { break }
        // Room for it, else wait (not holding the cursor: loaders read it meanwhile).
        enum Room { case taken, wait, tooLarge, stale }
        let room: Room = state.withLock {
          guard epoch == current else { return .stale }
          if keptBytes + m.size <= share { keptBytes += m.size; return .taken }
          return keptBytes == 0 ? .tooLarge : .wait
        }
        switch room {
        case .stale: return
        case .tooLarge: tooLarge.insert(m.offset); continue
        case .wait:
          c.lock.unlock()
          state.withLock {
            while epoch == current && keptBytes + m.size > share && keptBytes > 0 { state.wait() }
          }
          c.lock.lock()
          continue
        case .taken: break
        }
        guard let bytes = try? fetch(c, shard: shard, offset: m.offset, size: m.size, name: "") else {
          state.withLock {
            if epoch == current { keptBytes -= m.size; state.broadcast() }  // (a new plan zeroed the count)
          }
          break
        }
        // Kept only for this epoch (a new plan closed this cursor's stream and zeroed the count).
        let same = state.withLock { epoch == current }
        if same { c.ahead[m.offset] = bytes } else { return }
      }
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

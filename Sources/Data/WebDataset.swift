import Foundation
import Paths

/// WebDataset shards: tar files whose members are grouped into samples by key (the member path up
/// to the first dot of its file name); a sample needs an image (.jpg .jpeg .png .webp) and a caption
/// (.txt .text). Shards are indexed once (headers only), so epochs have an exact length and the
/// sample order is shuffled over the whole set. A truncated or unreadable shard keeps the samples
/// read before the damage and is reported.
public enum WebDataset {
  static let imageExts: Set<String> = ["jpg", "jpeg", "png", "webp"]
  static let imagePreference = ["jpg", "jpeg", "png", "webp"]
  static let captionExts: Set<String> = ["txt", "text"]

  /// Shard paths from `root_dir` (searched recursively) or a shard list file (relative lines
  /// resolve against root_dir when given, else the list file's folder; `{000..099}` ranges expand;
  /// `s3://`, `http(s)://` and `pipe:` lines are kept as written, in list order).
  public static func shards(rootDir: String?, listFile: String?) throws -> [String] {
    if let list = listFile {
      guard let text = try? String(contentsOfFile: list, encoding: .utf8) else {
        throw DataError.input("dataset.train.wds.shard_list_file \(list) cannot be read")
      }
      let base = rootDir ?? list.parentPath
      var out: [String] = []
      for line in text.components(separatedBy: .newlines) {
        let l = line.trimmingCharacters(in: .whitespaces)
        if l.isEmpty || l.hasPrefix("#") { continue }
        if ShardLocation.isRemote(l) {
          // Braces expand in the path, never in a query (endpoint=…) or a pipe: command's options.
          let q = l.hasPrefix("pipe:") ? l.endIndex : (l.firstIndex(of: "?") ?? l.endIndex)
          for e in try expandBraces(String(l[..<q])) {
            let name = e + l[q...]
            _ = try ShardLocation.parse(name)  // a malformed URL is named now, before any training
            out.append(name)
          }
          continue
        }
        for e in try expandBraces(l.hasPrefix("file://") ? String(l.dropFirst(7)) : l) {
          out.append(e.hasPrefix("/") ? e : (base as NSString).appendingPathComponent(e))
        }
      }
      return out
    }
    guard let root = rootDir else { throw DataError.input("dataset.train.type=wds needs dataset.train.wds.root_dir or shard_list_file") }
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
      throw DataError.input("dataset.train.wds.root_dir \(root) does not exist or is not a directory")
    }
    var out: [String] = []
    let e = FileManager.default.enumerator(atPath: root)
    while let rel = e?.nextObject() as? String {
      if rel.hasSuffix(".tar") { out.append((root as NSString).appendingPathComponent(rel)) }
    }
    return out.sorted()
  }

  /// `shard-{000..012}.tar` → 13 names (zero padding kept; several groups multiply).
  public static func expandBraces(_ s: String) throws -> [String] {
    guard let open = s.firstIndex(of: "{"), let close = s[open...].firstIndex(of: "}") else { return [s] }
    let inner = s[s.index(after: open)..<close]
    let head = String(s[..<open]), tail = String(s[s.index(after: close)...])
    var items: [String]
    if let dots = inner.range(of: "..") {
      let a = String(inner[..<dots.lowerBound]), b = String(inner[dots.upperBound...])
      // The span is computed without overflow (the ends may be any Int).
      guard let lo = Int(a), let hi = Int(b), lo <= hi, case let (span, overflow) = hi.subtractingReportingOverflow(lo), !overflow,
            span < 10_000_000 else {
        throw DataError.input("bad brace range {\(inner)} in \(s)")
      }
      let width = a.count
      items = (lo...hi).map { String(format: "%0\(width)ld", $0) }
    } else {
      items = inner.split(separator: ",").map(String.init)
    }
    return try items.flatMap { try expandBraces(head + $0 + tail) }
  }

  /// One epoch's sample order for `rank` of `worldSize` over indexed shard pairs, as a streaming
  /// WebDataset reads them: the shards (sorted) in an order shuffled by `rng`, each shard's samples
  /// in file order, through a shuffle buffer (webdataset's `shuffle(bufsize, initial)` algorithm:
  /// fill to `initial`, then each new sample in, one random sample out). Reads stay within a few
  /// shards at a time.
  ///
  /// Ranks split that shard stream into equal contiguous runs of ⌊n / W⌋ samples (split_by_node at
  /// sample granularity): each rank reads about 1/W of the shards (two neighbours share a boundary
  /// shard), every rank gets the same number of samples and steps, and any number of shards works,
  /// one included (webdataset's whole-shard split leaves ranks without data, and they hang). Loader
  /// threads then share the rank's run sample by sample (members are read by offset), so batches do
  /// not depend on how many threads there are. With one rank this is the single process's order.
  public static func epochOrder(_ pairs: [Pair], rng: inout some RandomNumberGenerator, rank: Int = 0, worldSize: Int = 1,
                                buffer: Int = 5000, initial: Int = 1000) -> [Int] {
    var byShard: [String: [Int]] = [:]
    for (i, p) in pairs.enumerated() {
      if case .member(let shard, _, _, _) = p.image { byShard[shard, default: []].append(i) }
      else { byShard["", default: []].append(i) }
    }
    var shards = byShard.keys.sorted()
    shards.shuffle(using: &rng)
    let all = shards.flatMap { byShard[$0] ?? [] }
    let per = worldSize > 1 ? all.count / worldSize : all.count
    let stream = all[min(rank * per, all.count)..<min((rank + 1) * per, all.count)]
    var out: [Int] = []
    out.reserveCapacity(stream.count)
    var buf: [Int] = []
    func pick() {
      let k = Int.random(in: 0..<buf.count, using: &rng)
      out.append(buf[k])
      buf[k] = buf[buf.count - 1]
      buf.removeLast()
    }
    var it = stream.makeIterator()
    let first = min(initial, buffer)
    while let s = it.next() {
      buf.append(s)
      if buf.count < buffer, let more = it.next() { buf.append(more) }
      if buf.count >= first { pick() }
    }
    while !buf.isEmpty { pick() }
    return out
  }

  /// Scans shards into pairs; captions are read now (small), image bytes later by offset. Local
  /// shards are scanned headers-only (seek-bound) on as many threads as cores; remote ones are
  /// streamed once (their bodies pass by unkept) on 8 threads. `done` is called after each shard.
  public static func index(_ shards: [String], done: (@Sendable () -> Void)? = nil) -> PairSet {
    merged(indexEach(shards, done: done))
  }

  /// One PairSet per shard, in the order given (`index` before merging: ranks index a share each).
  public static func indexEach(_ shards: [String], done: (@Sendable () -> Void)? = nil) -> [PairSet] {
    nonisolated(unsafe) let parts = UnsafeMutableBufferPointer<PairSet>.allocate(capacity: shards.count)  // one slot per shard
    parts.initialize(repeating: PairSet())
    defer { parts.deinitialize(); parts.deallocate() }
    let remote = shards.contains(where: ShardLocation.isRemote)
    let threads = min(shards.count, remote ? 8 : ProcessInfo.processInfo.activeProcessorCount)
    let next = NSLock()
    nonisolated(unsafe) var taken = 0
    let group = DispatchGroup()
    for _ in 0..<threads {
      group.enter()
      Thread {
        while true {
          next.lock()
          let i = taken
          taken += 1
          next.unlock()
          guard i < shards.count else { break }
          parts[i] = indexShard(shards[i])
          done?()
        }
        group.leave()
      }.start()
    }
    group.wait()
    return Array(parts)
  }

  /// Per-shard indexes joined in shard order.
  public static func merged(_ parts: [PairSet]) -> PairSet {
    var out = PairSet()
    for p in parts {
      out.pairs += p.pairs
      out.skippedCaptions += p.skippedCaptions
      out.brokenShards += p.brokenShards
      out.damage.merge(p.damage) { a, _ in a }
      out.unopened += p.unopened
    }
    return out
  }

  /// A tar header's size field: octal digits (space or NUL padded), or GNU's base-256 form (high
  /// bit of the first byte set; a 0xFF first byte is a negative number). nil when it is neither,
  /// or negative, or past Int.max: the header is corrupt.
  static func memberSize(_ field: ArraySlice<UInt8>) -> Int? {
    guard let first = field.first else { return nil }
    if first & 0x80 != 0 {
      guard first == 0x80 else { return nil }  // negative (0xFF…) or not base-256
      var v: UInt64 = 0
      for b in field.dropFirst() {
        guard v >> 56 == 0 else { return nil }
        v = v << 8 | UInt64(b)
      }
      return v <= UInt64(Int.max) ? Int(v) : nil
    }
    // Octal: leading spaces, digits, then spaces up to a NUL (after which nothing counts).
    var i = field.startIndex, v = 0, digits = 0
    while i < field.endIndex && field[i] == 0x20 { i += 1 }
    while i < field.endIndex, (0x30...0x37).contains(field[i]) {  // no sign, no 8 or 9
      v = v << 3 | Int(field[i] - 0x30)  // at most 12 digits: no overflow
      digits += 1
      i += 1
    }
    guard digits > 0, field[i...].prefix(while: { $0 != 0 }).allSatisfy({ $0 == 0x20 }) else { return nil }
    return v
  }

  /// Where a scan reads a shard: a local file (seeks over image bodies, its size known) or a
  /// remote stream (reads over them).
  final class TarSource {
    let file: FileHandle?
    let stream: ShardByteStream?
    /// The file's size; nil for streams (their end shows when a read comes up short).
    let size: UInt64?
    private(set) var offset: UInt64 = 0
    init(file: FileHandle) {
      self.file = file
      stream = nil
      size = (try? file.seekToEnd()) ?? 0
      try? file.seek(toOffset: 0)
    }
    init(stream: ShardByteStream) { (file, self.stream, size) = (nil, stream, nil) }

    /// Up to `n` bytes at the current offset (fewer at the end).
    func read(_ n: Int) throws -> [UInt8] {
      let out: [UInt8]
      if let file { out = [UInt8]((try? file.read(upToCount: n)) ?? Data()) } else { out = try stream!.readFully(n) }
      offset += UInt64(out.count)
      return out
    }
    /// Moves forward to `to`; false if the shard ends first.
    func skip(to: UInt64) throws -> Bool {
      guard to > offset else { return true }
      if let file {
        guard let size, to <= size else { return false }
        try file.seek(toOffset: to)
        offset = to
        return true
      }
      let ok = try stream!.skip(to - offset)
      offset = ok ? to : stream!.position
      return ok
    }
  }

  static func indexShard(_ shard: String) -> PairSet {
    var out = PairSet()
    let display = ShardLocation.display(shard)
    let source: TarSource
    if ShardLocation.isRemote(shard) {
      do { source = TarSource(stream: try ShardStreams.open(shard)) } catch {
        out.unopened.append(display); out.damage[display] = "\(error)".replacingOccurrences(of: "shard \(display): ", with: "")
        return out
      }
    } else {
      guard let h = FileHandle(forReadingAtPath: shard) else {
        out.brokenShards.append(display); out.damage[display] = "cannot be opened"; return out
      }
      source = TarSource(file: h)
    }
    defer { source.file.map { try? $0.close() }; source.stream?.close() }
    scan(source, shard: shard, display: display, into: &out)
    return out
  }

  /// A local shard scanned the way remote ones are (one sequential stream): fuzzing and tests.
  public static func indexStreamed(_ path: String) -> PairSet {
    var out = PairSet()
    guard let stream = try? FileStream(path: path, offset: 0) else { return out }
    defer { stream.close() }
    scan(TarSource(stream: stream), shard: path, display: path, into: &out)
    return out
  }

  /// Captions and long names are read whole: past this they are not text but a corrupt or hostile
  /// size (a streamed shard has no file size to bound it).
  static let maxTextMember = 16 << 20

  /// Groups a tar's members into samples (captions read now, image bodies located by offset).
  static func scan(_ h: TarSource, shard: String, display: String, into out: inout PairSet) {
    var longName: String? = nil
    var currentKey: String? = nil
    var fields: [String: (UInt64, Int, String)] = [:]
    var caption: String? = nil
    var broken = false
    let ends = h.size.map { " at byte \($0)" } ?? ""
    func damaged(_ why: String) { broken = true; out.damage[display] = why }
    func readMember(_ size: Int) -> [UInt8]? {  // right after its header
      guard let d = try? h.read(size), d.count == size else {
        damaged("truncated (a member runs past the end of the file\(ends))")
        return nil
      }
      return d
    }
    func flush() {
      // The first image extension in a fixed order (a sample may carry several).
      if let cap = caption, let ext = imagePreference.first(where: { fields[$0] != nil }), let img = fields[ext].map({ (key: ext, value: $0) }) {
        let c = cap.trimmingCharacters(in: .whitespacesAndNewlines)
        if c.isEmpty { out.skippedCaptions += 1 } else {
          out.pairs.append(Pair(image: .member(shard: shard, offset: img.value.0, size: img.value.1, name: img.value.2), caption: c))
        }
      } else if currentKey != nil && (caption != nil || !fields.isEmpty) {
        out.skippedCaptions += 1
      }
      fields = [:]; caption = nil
    }
    var next: UInt64 = 0  // the next header's offset
    do {
      while true {
        let at = next
        let header = try h.read(512)
        guard header.count == 512 else {
          if !header.isEmpty || h.size.map({ $0 != at }) == true { damaged("truncated (it ends inside a tar header at byte \(at))") }
          break
        }
        let b = header
        if b.allSatisfy({ $0 == 0 }) { break }  // end of archive
        func str(_ r: Range<Int>) -> String { String(decoding: b[r].prefix { $0 != 0 }, as: UTF8.self) }
        // A corrupt size (a sign, a non-octal digit, a negative base-256 value) ends the shard
        // here, as truncation does: the samples before it are kept.
        guard let size = memberSize(b[124..<136]) else {
          damaged("corrupt (the tar header at byte \(at) has an invalid size field '\(String(decoding: b[124..<136].map { $0 < 0x20 || $0 > 0x7E ? UInt8(ascii: "?") : $0 }, as: UTF8.self))')")
          break
        }
        let type = b[156]
        var name = longName ?? str(0..<100)
        if longName == nil, str(257..<263).hasPrefix("ustar") {
          let prefix = str(345..<500)
          if !prefix.isEmpty { name = prefix + "/" + name }
        }
        let dataStart = at + 512
        // A member past the end of a file ends the shard before any seek: offsets near
        // UInt64.max would trap in Foundation's conversion to off_t.
        if let fileSize = h.size, UInt64(size) > fileSize - min(dataStart, fileSize) {
          damaged("truncated (the member at byte \(at) claims \(size) bytes; the file ends at byte \(fileSize))")
          break
        }
        let padded = (UInt64(size) + 511) / 512 * 512
        guard dataStart <= UInt64.max - padded else { damaged("corrupt (the member at byte \(at) claims \(size) bytes)"); break }
        next = dataStart + padded
        if type == UInt8(ascii: "L") {  // GNU long name for the next member
          // (a streamed shard has no size to bound a claim: a name of megabytes is a corrupt header)
          guard size <= maxTextMember else { damaged("corrupt (the long name at byte \(at) claims \(size) bytes)"); break }
          guard let d = readMember(size) else { break }
          longName = String(decoding: d.prefix { $0 != 0 }, as: UTF8.self)
          guard try h.skip(to: next) else { damaged("truncated (a member runs past the end of the file\(ends))"); break }
          continue
        }
        longName = nil
        let base = name.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? name
        let dir = name.parentPath
        var added: String? = nil  // an image member located (not yet known to be complete when streaming)
        if (type == UInt8(ascii: "0") || type == 0), let dot = base.firstIndex(of: ".") {
          let key = (dir.isEmpty ? "" : dir + "/") + base[..<dot]
          let ext = base[base.index(after: dot)...].lowercased()
          if key != currentKey || fields[ext] != nil || (captionExts.contains(ext) && caption != nil) {
            flush()
            currentKey = key
          }
          if captionExts.contains(ext) && size > maxTextMember {
            caption = ""  // not a caption: the sample counts as one without (its bytes are passed by)
          } else if captionExts.contains(ext) {
            guard let d = readMember(size) else { break }
            caption = String(decoding: d, as: UTF8.self)
          } else {
            fields[ext] = (dataStart, size, name)
            added = ext
          }
        }
        // A member whose data runs past the end makes the shard truncated: that member is dropped,
        // its sample's complete members stay (as when a file's size shows it before reading).
        guard try h.skip(to: next) else {
          damaged("truncated (a member runs past the end of the file\(ends))")
          if let added { fields[added] = nil }
          break
        }
      }
    } catch {
      let why = String(describing: error).replacingOccurrences(of: "shard \(display): ", with: "")
      if h.offset == 0 {
        // Nothing came (a missing key, a refused request): the shard is skipped whole.
        out.unopened.append(display)
        out.damage[display] = why
        return
      }
      damaged("unreadable at byte \(h.offset): \(why)")
      fields = [:]; caption = nil
    }
    if broken { out.brokenShards.append(display) }
    flush()
  }
}

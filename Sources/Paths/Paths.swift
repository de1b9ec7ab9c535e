import Foundation

extension String {
  /// The folder part of a path, as `NSString.deletingLastPathComponent` gives it ("a/b" → "a",
  /// "/a" → "/", "a" → "", "a/b/" → "a"). Foundation's own traps on some inputs (a one-character
  /// path such as "0", or "a//"), and paths come from specs, list files and tar headers.
  public var parentPath: String {
    var s = Substring(self)
    while s.count > 1, s.hasSuffix("/") { s = s.dropLast() }
    guard let slash = s.lastIndex(of: "/") else { return "" }
    var dir = s[..<slash]
    while dir.hasSuffix("/") { dir = dir.dropLast() }
    return dir.isEmpty && s.hasPrefix("/") ? "/" : String(dir)
  }
}

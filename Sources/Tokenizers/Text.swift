import Foundation

// Text is handled as arrays of Unicode scalars (never Swift `String` comparisons, which are
// canonical-equivalence based and would merge distinct vocabulary entries), and vocabulary keys
// are UTF-8 byte arrays.

typealias Scalars = [Unicode.Scalar]

extension Array where Element == Unicode.Scalar {
  var utf8Bytes: [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(count)
    for s in self { UTF8.encode(s) { out.append($0) } }
    return out
  }
  var string: String { var s = String.UnicodeScalarView(); s.append(contentsOf: self); return String(s) }
}

extension String {
  var scalars: Scalars { Array(unicodeScalars) }
  var utf8Bytes: [UInt8] { Array(utf8) }
}

/// The UTF-8 bytes of one scalar.
func utf8Bytes(_ s: Unicode.Scalar) -> [UInt8] {
  var out: [UInt8] = []
  UTF8.encode(s) { out.append($0) }
  return out
}

extension Unicode.Scalar {
  /// Rust's char::is_whitespace (the Unicode White_Space property).
  var isWhitespace: Bool { properties.isWhitespace }
  var isAlphanumeric: Bool { properties.isAlphabetic || properties.numericType != nil }
  /// Unicode general category P* (what tokenizers calls punctuation).
  var isPunctuation: Bool {
    switch properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
         .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
    default: return false
    }
  }
  var isASCIIPunctuation: Bool {
    value < 128 && (33...47 ~= value || 58...64 ~= value || 91...96 ~= value || 123...126 ~= value)
  }
  var isControl: Bool {
    switch properties.generalCategory {
    case .control, .format, .privateUse, .surrogate, .unassigned: return true
    default: return false
    }
  }
  var isCombiningMark: Bool { properties.generalCategory == .nonspacingMark }
}

func bytesToString(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

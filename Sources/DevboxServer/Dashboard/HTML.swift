import Foundation

/// A fragment of HTML. Built with string interpolation where every `String` interpolated is
/// escaped and only `HTML` values are inserted as they are, so a page cannot carry an
/// unescaped value by accident. This is the dashboard's template language (typed Swift
/// templates, checked by the compiler, instead of a Mustache runtime).
struct HTML: ExpressibleByStringInterpolation, Sendable {
    var raw: String

    init(raw: String) { self.raw = raw }
    init(stringLiteral value: String) { raw = value }
    init(stringInterpolation: StringInterpolation) { raw = stringInterpolation.out }

    struct StringInterpolation: StringInterpolationProtocol {
        var out = ""
        init(literalCapacity: Int, interpolationCount: Int) { out.reserveCapacity(literalCapacity * 2) }
        mutating func appendLiteral(_ literal: String) { out += literal }
        mutating func appendInterpolation(_ value: String) { out += HTML.escape(value) }
        mutating func appendInterpolation(_ value: String?) { out += HTML.escape(value ?? "") }
        mutating func appendInterpolation(_ value: Int) { out += String(value) }
        mutating func appendInterpolation(_ value: HTML) { out += value.raw }
        mutating func appendInterpolation(_ values: [HTML]) { for v in values { out += v.raw } }
        mutating func appendInterpolation(_ value: HTML?) { out += value?.raw ?? "" }
    }

    /// Escapes text for element content and double- or single-quoted attribute values.
    static func escape(_ s: String) -> String {
        var o = ""
        o.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&#39;"
            default: o.unicodeScalars.append(c)
            }
        }
        return o
    }

    static let empty = HTML(raw: "")

    /// `attr` when `on`, else nothing (for `checked`, `selected`, `disabled`).
    static func flag(_ on: Bool, _ attr: String) -> HTML { on ? HTML(raw: " " + attr) : .empty }
}

/// Dates and durations as the pages show them.
enum Display {
    static func time(_ d: Date?) -> String {
        guard let d else { return "—" }
        // Whole seconds, UTC (the API's own timestamps carry milliseconds); a format style
        // is a value, not a formatter object built for every timestamp of every poll.
        return d.formatted(.iso8601)
    }

    /// "3 s", "4 min", "2 h", "5 d".
    static func age(since d: Date, now: Date = Date()) -> String {
        duration(max(0, now.timeIntervalSince(d)))
    }

    static func duration(_ s: TimeInterval) -> String {
        switch s {
        case ..<60: return "\(Int(s)) s"
        case ..<3600: return "\(Int(s / 60)) min"
        case ..<86400: return "\(Int(s / 3600)) h"
        default: return "\(Int(s / 86400)) d"
        }
    }

    /// The last `limit` bytes of `s` on a character boundary.
    static func tail(_ s: String, limit: Int = 8192) -> (text: String, cut: Bool) {
        guard s.utf8.count > limit else { return (s, false) }
        let bytes = s.utf8.suffix(limit).drop(while: { $0 & 0xC0 == 0x80 })
        return (String(decoding: bytes, as: UTF8.self), true)
    }
}

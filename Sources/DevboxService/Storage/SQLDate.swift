import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#endif

/// Dates as GRDB stores them ("yyyy-MM-dd HH:mm:ss.SSS", UTC), for the date columns of our
/// records (`StoredRecord`) and the arguments of the pipeline's statements, without GRDB's
/// `DateFormatter`: that formatter loads ICU (about 3 MiB more resident memory in an idle
/// serve, whose first worker claim passes a date) and costs several microseconds per call.
/// The same arithmetic as that formatter (milliseconds since 1970 as a double, rounded to
/// the nearest), so both write the same text.
enum SQLDate {
    static func string(_ date: Date) -> String {
        let ms = Int64(((date.timeIntervalSinceReferenceDate + 978_307_200.0) * 1000.0).rounded())
        var seconds = time_t(ms >= 0 ? ms / 1000 : (ms - 999) / 1000)
        let millis = Int(ms - Int64(seconds) * 1000)
        var t = tm()
        gmtime_r(&seconds, &t)
        var out: [UInt8] = []
        out.reserveCapacity(23)
        func digits(_ value: Int, _ width: Int) {
            var v = value
            var buf = [UInt8](repeating: UInt8(ascii: "0"), count: width)
            for i in stride(from: width - 1, through: 0, by: -1) {
                buf[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            out += buf
        }
        digits(Int(t.tm_year) + 1900, 4)
        out.append(UInt8(ascii: "-"))
        digits(Int(t.tm_mon) + 1, 2)
        out.append(UInt8(ascii: "-"))
        digits(Int(t.tm_mday), 2)
        out.append(UInt8(ascii: " "))
        digits(Int(t.tm_hour), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(t.tm_min), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(t.tm_sec), 2)
        out.append(UInt8(ascii: "."))
        digits(millis, 3)
        return String(decoding: out, as: UTF8.self)
    }

    static func value(_ date: Date) -> DatabaseValue { string(date).databaseValue }
    static func value(_ date: Date?) -> DatabaseValue { date.map(value) ?? .null }
}

/// A record whose date columns are written by `SQLDate` (same text as GRDB's default).
/// Public only because `SessionRecord` is.
public protocol StoredRecord: EncodableRecord {}

extension StoredRecord {
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
        .custom { SQLDate.value($0) }
    }
}

import Foundation

/// Random, URL-safe identifiers with a type prefix (`dbx_`, `op_`, `usr_`, ...).
public enum Identifier {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// `length` characters of 5 random bits each. One 64-bit draw from the system generator
    /// (one `getrandom` call) yields 12 characters; a create makes six identifiers.
    public static func make(_ prefix: String, length: Int = 20) -> String {
        var rng = SystemRandomNumberGenerator()
        var chars: [UInt8] = []
        chars.reserveCapacity(length)
        var bits: UInt64 = 0
        var left = 0
        for _ in 0..<length {
            if left == 0 {
                bits = rng.next()
                left = 12
            }
            chars.append(alphabet[Int(bits & 31)])
            bits >>= 5
            left -= 1
        }
        return prefix + String(decoding: chars, as: UTF8.self)
    }
}

import Foundation

/// Random, URL-safe identifiers with a type prefix (`dbx_`, `op_`, `usr_`, ...).
public enum Identifier {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")

    public static func make(_ prefix: String, length: Int = 20) -> String {
        var rng = SystemRandomNumberGenerator()
        var s = prefix
        s.reserveCapacity(prefix.count + length)
        for _ in 0..<length { s.append(alphabet[Int(rng.next() % 32)]) }
        return s
    }
}

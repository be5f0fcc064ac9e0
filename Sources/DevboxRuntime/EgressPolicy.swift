// A box's egress policy: where its traffic may go, by network (nftables) and by domain name
// (its resolver, which admits the addresses of allowed names for their TTL).
//
//   deny_all  + allow: an allow-list. Names outside it resolve to NXDOMAIN; networks outside
//                      it and addresses not admitted by the resolver are unreachable.
//   allow_all + deny:  a deny-list. Names in it resolve to NXDOMAIN; networks in it are
//                      unreachable.
//
// Whatever the policy, `IPNetwork.alwaysBlocked` stays unreachable; an entry entirely inside
// it is refused (it could never take effect). A deny entry wins over an allow entry.

/// A policy entry or field that was refused. `field` names it the way the create request
/// does (`network.allow[2]`); `message` says why, for people.
public struct EgressPolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// What a box's resolver does with a name.
public enum DNSDecision: Sendable, Equatable {
    /// Answer NXDOMAIN without asking upstream.
    case deny
    /// Forward upstream; with `admit`, the answered addresses are admitted for the box.
    case allow(admit: Bool)
}

public struct EgressPolicy: Sendable, Equatable, Codable {
    public enum Egress: String, Sendable, Codable, CaseIterable {
        case allowAll = "allow_all"
        case denyAll = "deny_all"
    }

    /// At most this many entries in `allow`, and as many in `deny`.
    public static let maxEntries = 64

    /// The default: everything but the always-blocked ranges.
    public static let allowAll = EgressPolicy(validated: .allowAll, allow: [], deny: [])

    public let egress: Egress
    /// Normalised entries, in the order given: canonical CIDRs (`10.0.0.0/8`; a bare address
    /// becomes `/32` or `/128`) and lower-case domains without a trailing dot.
    public let allow: [String]
    public let deny: [String]

    // Parsed forms, derived from the entries above (not part of equality or coding).
    public let allowNetworks: [IPNetwork]
    public let denyNetworks: [IPNetwork]
    private let allowMatcher: DomainMatcher
    private let denyMatcher: DomainMatcher

    /// Domain entries of `allow` (`example.org`, `*.example.org`).
    public var allowDomains: [String] { allowMatcher.entries }
    /// Domain entries of `deny`.
    public var denyDomains: [String] { denyMatcher.entries }

    /// Validates and normalises; errors name the field under `field` (`network.deny[0]`).
    public init(egress: Egress = .allowAll, allow: [String] = [], deny: [String] = [],
                field: String = "network") throws(EgressPolicyError) {
        let a = try EgressPolicy.parseList(allow, field: "\(field).allow")
        let d = try EgressPolicy.parseList(deny, field: "\(field).deny")
        self.init(egress: egress, allow: a, deny: d)
    }

    /// The create request's `network` object, fields as they came (nil: absent).
    public static func parse(egress: String?, allow: [String]?, deny: [String]?,
                             field: String = "network") throws(EgressPolicyError) -> EgressPolicy {
        var mode = Egress.allowAll
        if let egress {
            guard let m = Egress(rawValue: egress) else {
                throw EgressPolicyError(field: "\(field).egress", message: "must be \"allow_all\" or \"deny_all\"")
            }
            mode = m
        }
        return try EgressPolicy(egress: mode, allow: allow ?? [], deny: deny ?? [], field: field)
    }

    private init(validated egress: Egress, allow: [String], deny: [String]) {
        // Only for the constant above: no entries, nothing to validate.
        self.egress = egress
        self.allow = allow
        self.deny = deny
        allowNetworks = []
        denyNetworks = []
        allowMatcher = DomainMatcher([])
        denyMatcher = DomainMatcher([])
    }

    private init(egress: Egress, allow: [Entry], deny: [Entry]) {
        self.egress = egress
        self.allow = allow.map(\.text)
        self.deny = deny.map(\.text)
        allowNetworks = allow.compactMap(\.network)
        denyNetworks = deny.compactMap(\.network)
        allowMatcher = DomainMatcher(allow.compactMap(\.domain))
        denyMatcher = DomainMatcher(deny.compactMap(\.domain))
    }

    public static func == (a: EgressPolicy, b: EgressPolicy) -> Bool {
        a.egress == b.egress && a.allow == b.allow && a.deny == b.deny
    }

    /// What the box's resolver does with a query for `name` (any case, trailing dot or not).
    public func dnsDecision(for name: String) -> DNSDecision {
        let n = EgressPolicy.normalisedQueryName(name)
        if denyMatcher.matches(n) { return .deny }
        if allowMatcher.matches(n) { return .allow(admit: egress == .denyAll) }
        return egress == .allowAll ? .allow(admit: false) : .deny
    }

    /// Lower-cased (ASCII only: DNS compares other bytes exactly), one trailing dot removed.
    static func normalisedQueryName(_ name: String) -> String {
        var n = name.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 | 0x20 : $0 }
        if n.last == UInt8(ascii: ".") { n.removeLast() }
        return String(decoding: n, as: UTF8.self)
    }

    // MARK: Codable

    private enum CodingKeys: String, CodingKey { case egress, allow, deny }

    /// Decoding validates like `parse`: fields absent take their defaults; an error names the
    /// field under the decoder's coding path (`network.allow[2]` inside a create request).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let path = decoder.codingPath.map(\.stringValue).joined(separator: ".")
        self = try EgressPolicy.parse(egress: try c.decodeIfPresent(String.self, forKey: .egress),
                                      allow: try c.decodeIfPresent([String].self, forKey: .allow),
                                      deny: try c.decodeIfPresent([String].self, forKey: .deny),
                                      field: path.isEmpty ? "network" : path)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(egress, forKey: .egress)
        try c.encode(allow, forKey: .allow)
        try c.encode(deny, forKey: .deny)
    }

    // MARK: Entries

    private struct Entry {
        let text: String
        let network: IPNetwork?
        let domain: String?
    }

    private static func parseList(_ list: [String], field: String) throws(EgressPolicyError) -> [Entry] {
        guard list.count <= maxEntries else {
            throw EgressPolicyError(field: field, message: "at most \(maxEntries) entries (got \(list.count))")
        }
        var entries: [Entry] = []
        for (i, raw) in list.enumerated() {
            let f = "\(field)[\(i)]"
            do {
                entries.append(try parseEntry(raw))
            } catch {
                throw EgressPolicyError(field: f, message: error.message)
            }
        }
        return entries
    }

    private static func parseEntry(_ raw: String) throws(IPParseError) -> Entry {
        let text = raw.trimmingASCIIWhitespace
        guard !text.isEmpty else { throw IPParseError(message: "empty entry") }
        // A CIDR has a '/', an IPv6 address a ':', an IPv4 address only digits and dots; a
        // domain's last label is never all digits (RFC 3696), so "1.2.3.256" is a bad address.
        let lastLabel = text.split(separator: ".", omittingEmptySubsequences: false).last ?? ""
        let looksNumeric = !lastLabel.isEmpty && lastLabel.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        if text.contains("/") || text.contains(":") || looksNumeric {
            let network = try IPNetwork(parsing: text)
            if network.isInsideAlwaysBlocked {
                throw IPParseError(message: "\(network) is inside an always-blocked range (loopback, private, link-local, multicast or reserved)")
            }
            return Entry(text: network.description, network: network, domain: nil)
        }
        let domain = try validateDomain(text)
        return Entry(text: domain, network: nil, domain: domain)
    }

    /// `example.org` or `*.example.org`, returned lower-cased without a trailing dot. Labels
    /// of 1–63 letters, digits and hyphens, not starting or ending with a hyphen; at least two
    /// labels (the `*` counts: `*.com` is every name under com); at most 253 characters.
    static func validateDomain(_ raw: String) throws(IPParseError) -> String {
        // ASCII lower-casing only: Unicode's would map e.g. the Kelvin sign to "k" and let a
        // non-ASCII entry pass as an ASCII one.
        let name = normalisedQueryName(raw)
        guard name.utf8.count <= 253 else { throw IPParseError(message: "a domain name has at most 253 characters") }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else {
            throw IPParseError(message: "\"\(raw)\" is not a CIDR or a domain name of at least two labels")
        }
        for (i, label) in labels.enumerated() {
            if label == "*" {
                guard i == 0 else { throw IPParseError(message: "'*' is only allowed as the whole first label (\"*.example.org\")") }
                continue
            }
            guard !label.isEmpty else { throw IPParseError(message: "\"\(raw)\" has an empty label") }
            guard label.utf8.count <= 63 else { throw IPParseError(message: "a label has at most 63 characters") }
            guard label.utf8.allSatisfy({ b in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: "-")
            }) else {
                if label.contains("*") {
                    throw IPParseError(message: "'*' is only allowed as the whole first label (\"*.example.org\")")
                }
                throw IPParseError(message: "\"\(raw)\" has a label with characters other than letters, digits and '-' (use the xn-- form of international names)")
            }
            guard !label.hasPrefix("-"), !label.hasSuffix("-") else {
                throw IPParseError(message: "a label cannot start or end with '-'")
            }
        }
        return name
    }
}

/// Exact names and `*.` suffixes of one list.
private struct DomainMatcher: Sendable {
    let entries: [String]
    private let exact: Set<String>
    /// ".example.org" for "*.example.org".
    private let suffixes: [String]

    init(_ entries: [String]) {
        self.entries = entries
        exact = Set(entries.filter { !$0.hasPrefix("*.") })
        suffixes = entries.filter { $0.hasPrefix("*.") }.map { String($0.dropFirst()) }
    }

    /// `name` is normalised (lower case, no trailing dot). A wildcard needs at least one more
    /// label: `*.example.org` matches `a.example.org`, never `example.org` itself.
    func matches(_ name: String) -> Bool {
        if exact.contains(name) { return true }
        let n = Array(name.utf8)
        return suffixes.contains { s in
            // Compared byte for byte (no Unicode equivalence), with one full label before the
            // suffix: ".example.org" alone (an empty label) is not a name under example.org.
            let suffix = Array(s.utf8)
            return n.count > suffix.count && n[(n.count - suffix.count)...].elementsEqual(suffix)
                && n[n.count - suffix.count - 1] != UInt8(ascii: ".")
        }
    }
}

extension String {
    fileprivate var trimmingASCIIWhitespace: String {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0a || $0 == 0x0d }
        let bytes = Array(utf8)
        guard let start = bytes.firstIndex(where: { !isSpace($0) }), let end = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[start...end], as: UTF8.self)
    }
}

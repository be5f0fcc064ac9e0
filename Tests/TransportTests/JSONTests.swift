import Foundation
import Testing

@testable import Transport

@Suite struct JSONValueTests {
    @Test func parsesScalarsKeepingIntAndDoubleApart() throws {
        #expect(try JSONValue(parsing: "1") == .int(1))
        #expect(try JSONValue(parsing: "-0") == .int(0))
        #expect(try JSONValue(parsing: "1.0") == .double(1.0))
        #expect(try JSONValue(parsing: "1e3") == .double(1000))
        #expect(try JSONValue(parsing: "-12.5E-1") == .double(-1.25))
        #expect(try JSONValue(parsing: "9223372036854775807") == .int(Int.max))
        #expect(try JSONValue(parsing: "92233720368547758070") == .double(9.223372036854775807e19))
        #expect(try JSONValue(parsing: " true ") == .bool(true))
        #expect(try JSONValue(parsing: "null") == .null)
        #expect(try JSONValue(parsing: #""a\"b\\c\/\n\u00e9\ud83d\ude00""#) == .string("a\"b\\c/\né😀"))
    }

    @Test func rejectsMalformedInput() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "tru", "\"abc", "\"a\u{01}\"", "{} x", "[1 2]", "\"\\x\""] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONValue(parsing: bad) }
        }
    }

    @Test func depthLimit() {
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
        #expect((try? JSONValue(parsing: deep, maxDepth: 1000)) != nil)
    }

    @Test func serializesCompactSortedAndEscaped() throws {
        let v: JSONValue = ["b": [1, 2.5, true, nil], "a": "line\nbreak \"q\" \u{01}", "c": ["x": 1.0]]
        #expect(v.jsonString == #"{"a":"line\nbreak \"q\" \u0001","b":[1,2.5,true,null],"c":{"x":1.0}}"#)
        #expect(!v.serialized().contains(0x0A))
        #expect(try JSONValue(parsing: v.serialized()) == v)
        #expect(JSONValue.double(.infinity).jsonString == "null")
        #expect(JSONValue.double(1e-7).jsonString == "1e-07")
        #expect(try JSONValue(parsing: JSONValue.double(0.1).jsonString) == .double(0.1))
    }

    @Test func roundTripsUnicode() throws {
        let s: JSONValue = .string("ünïcødé – 日本 🎉")
        #expect(try JSONValue(parsing: s.serialized()) == s)
    }

    @Test func accessorsAndCodable() throws {
        let v: JSONValue = ["n": 3, "d": 2.0, "f": 2.5, "s": "x", "a": [1], "o": ["k": false]]
        #expect(v["n"]?.intValue == 3)
        #expect(v["d"]?.intValue == 2)
        #expect(v["n"]?.doubleValue == 3.0)
        #expect(v["s"]?.stringValue == "x")
        #expect(v["a"]?[0] == .int(1))
        #expect(v["o"]?["k"]?.boolValue == false)
        #expect(v["missing"] == nil)
        let w: JSONValue = ["n": 3, "f": 2.5, "s": "x", "a": [1, nil], "o": ["k": false]]
        let data = try JSONEncoder().encode(w)
        #expect(try JSONDecoder().decode(JSONValue.self, from: data) == w)
        struct P: Codable, Equatable { var name: String; var n: Int }
        let pv = try JSONValue(encoding: P(name: "a", n: 1))
        #expect(pv == ["name": "a", "n": 1])
        #expect(try pv.decode(P.self) == P(name: "a", n: 1))
    }

    @Test func argumentDecodingNamesTheField() {
        let missing: JSONValue = ["count": 1]
        #expect(throws: MCPToolArgumentError(field: "name", reason: "is required")) {
            try missing.decodeArguments(TypedArgs.self)
        }
        let wrong: JSONValue = ["count": "three", "name": "x"]
        #expect(throws: MCPToolArgumentError(field: "count", reason: "must be of type integer")) {
            try wrong.decodeArguments(TypedArgs.self)
        }
        let nested: JSONValue = ["count": 1, "name": "x", "repos": [["url": 5]]]
        #expect(throws: MCPToolArgumentError(field: "repos[0].url", reason: "must be of type string")) {
            try nested.decodeArguments(TypedArgs.self)
        }
    }
}

@Suite struct JSONRPCTests {
    @Test func idsKeepTheirType() {
        guard case .request(let id1, "m", nil) = JSONRPC.decode(Array(#"{"jsonrpc":"2.0","id":"7","method":"m"}"#.utf8)) else {
            Issue.record("not a request"); return
        }
        #expect(id1 == .string("7"))
        guard case .request(let id2, _, _) = JSONRPC.decode(Array(#"{"jsonrpc":"2.0","id":7,"method":"m"}"#.utf8)) else {
            Issue.record("not a request"); return
        }
        #expect(id2 == .int(7))
        #expect(id1 != id2)
        #expect(String(decoding: JSONRPC.encodeResult(id: id1, result: [:]), as: UTF8.self) == #"{"jsonrpc":"2.0","id":"7","result":{}}"#)
        #expect(String(decoding: JSONRPC.encodeResult(id: id2, result: [:]), as: UTF8.self) == #"{"jsonrpc":"2.0","id":7,"result":{}}"#)
    }

    @Test func classification() {
        func code(_ s: String) -> (JSONRPCID?, Int)? {
            if case .invalid(let id, let e) = JSONRPC.decode(Array(s.utf8)) { return (id, e.code) }
            return nil
        }
        #expect(code("{not json")! == (nil, -32700))
        #expect(code(#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)! == (nil, -32600))
        #expect(code(#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#)! == (.int(3), -32600))
        #expect(code(#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#)! == (nil, -32600))
        #expect(code(#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#)! == (nil, -32600))
        #expect(code(#"{"jsonrpc":"2.0","id":"x","method":5}"#)! == (.string("x"), -32600))
        #expect(code(#"{"jsonrpc":"2.0","id":"x","method":"m","params":[1]}"#)! == (.string("x"), -32600))
        #expect(code(#"{"jsonrpc":"2.0","id":"x"}"#)! == (.string("x"), -32600))
        #expect(code("42")! == (nil, -32600))
        if case .notification("n", nil) = JSONRPC.decode(Array(#"{"jsonrpc":"2.0","method":"n"}"#.utf8)) {} else {
            Issue.record("not a notification")
        }
        if case .response(.int(4)) = JSONRPC.decode(Array(#"{"jsonrpc":"2.0","id":4,"result":{}}"#.utf8)) {} else {
            Issue.record("not a response")
        }
    }

    @Test func parseErrorHasNullID() {
        let e = JSONRPC.encodeError(id: nil, error: .parseError())
        #expect(String(decoding: e, as: UTF8.self) == #"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#)
    }
}

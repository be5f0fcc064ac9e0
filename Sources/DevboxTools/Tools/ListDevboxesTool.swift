import DevboxModel
import Foundation
import Transport

/// `list_devboxes`: the caller's devboxes, live ones by default, a page at a time, each as a
/// compact item (get_devbox has the rest). Destroyed boxes pile up over an agent's life and
/// every full devbox costs a few hundred tokens, so the default answer stays small.
///
/// The backends list everything (the REST list has no filter or paging yet), so the filter
/// and the paging happen here. The cursor is a keyset — the (created_at, id) of the last item
/// shown — rather than an offset, so boxes created or destroyed between pages neither repeat
/// nor skip items.
struct ListDevboxesTool: DevboxTool {
    struct Input: ToolInput {
        var state: String?
        var limit: Int?
        var cursor: String?

        func validate() throws(ToolFailure) {
            if let cursor, Cursor(cursor) == nil {
                throw ToolFailure(
                    "cursor is not one list_devboxes returned. Pass next_cursor from the previous result unchanged (or omit it for the first page) and call list_devboxes again.")
            }
        }
    }

    static let defaultLimit = 20
    static let filters = ["live", "all"] + DevboxState.allCases.map(\.rawValue)

    let definition = MCPTool(
        name: "list_devboxes",
        title: "List devboxes",
        description: """
            Your devboxes, newest first: id, name, state, plan, created_at. Live ones only unless state says \
            otherwise; pass next_cursor as cursor for the next page.
            """,
        inputSchema: Schema.object([
            "state": [
                "type": "string", "enum": .array(filters.map { .string($0) }), "default": "live",
                "description": "live: all but destroyed; all; or one state.",
            ],
            "limit": Schema.integer("Page size.", minimum: 1, maximum: 100, default: defaultLimit),
            "cursor": Schema.string("next_cursor of the previous page."),
        ]),
        outputSchema: Schema.output(
            [
                "devboxes": Schema.array(
                    Schema.output([
                        "id": Schema.str, "state": Schema.str,  // name, plan, created_at: in the description
                    ])),
                "next_cursor": Schema.typed(["string", "null"], "null on the last page."),
            ]),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let filter = input.state ?? "live"
        let limit = input.limit ?? Self.defaultLimit
        var boxes = try await call.backend.listDevboxes().filter { box in
            switch filter {
            case "live": box.state != .destroyed
            case "all": true
            default: box.state.rawValue == filter
            }
        }
        // Newest first with the id breaking ties, the order the cursor's keyset assumes.
        boxes.sort { Cursor(of: $0) > Cursor(of: $1) }
        if let after = input.cursor.flatMap(Cursor.init) {
            boxes = boxes.filter { Cursor(of: $0) < after }
        }
        let page = boxes.prefix(limit)
        let next: JSONValue = boxes.count > limit ? page.last.map { .string(Cursor(of: $0).token) } ?? .null : .null
        return .structured([
            "devboxes": .array(
                page.map { box in
                    [
                        "id": .string(box.id), "name": .string(box.name), "state": .string(box.state.rawValue),
                        "plan": .string(box.plan), "created_at": ToolJSON.date(box.createdAt),
                    ]
                }),
            "next_cursor": next,
        ])
    }

    /// Where a page ends: creation time in milliseconds and id, compared in that order.
    struct Cursor: Comparable {
        var millis: Int64
        var id: String

        init(of box: Devbox) {
            millis = Int64((box.createdAt.timeIntervalSince1970 * 1000).rounded(.down))
            id = box.id
        }

        /// Parses a token made by `token`; nil for anything else.
        init?(_ token: String) {
            guard let data = Data(base64Encoded: token), let text = String(data: data, encoding: .utf8) else { return nil }
            let parts = text.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let m = Int64(parts[0]), !parts[1].isEmpty else { return nil }
            millis = m
            id = String(parts[1])
        }

        var token: String { Data("\(millis):\(id)".utf8).base64EncodedString() }

        static func < (a: Cursor, b: Cursor) -> Bool { (a.millis, a.id) < (b.millis, b.id) }
    }
}

import DevboxModel

/// `GET /api/v1/devboxes/:id` and a page of the list as the bytes of their answer
/// (`AppDatabase.devboxJSON`): the same answers as `devbox(_:id:)` and
/// `listDevboxes(_:page:)` encoded with `encode`, kept encoded while the devbox or page is
/// cached, so the serve writes a polled answer out without building it again.
extension DevboxCore {
    public func devboxJSON(_ principal: Principal, id: String, encode: (Devbox) -> [UInt8]) async throws(ServiceError) -> [UInt8] {
        let found: [UInt8]?
        do { found = try await db.devboxJSON(id: id, userId: principal.userId, encode: encode) } catch { throw storageFailure(error) }
        guard let found else { throw .notFound("no devbox with id \(id)") }
        return found
    }

    /// `encode` gets the page's devboxes and its `next_cursor` (nil on the last page).
    public func listDevboxesJSON(
        _ principal: Principal, page: DevboxPageRequest, encode: ([Devbox], String?) -> [UInt8]
    ) async throws(ServiceError) -> [UInt8] {
        if let limit = page.limit, !(1...500).contains(limit) {
            throw .validation(field: "limit", message: "limit must be between 1 and 500")
        }
        do {
            return try await db.devboxPageJSON(userId: principal.userId, page) { encode($0, $1?.encoded) }
        } catch {
            throw storageFailure(error)
        }
    }
}

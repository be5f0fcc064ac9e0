import DevboxModel

/// The two hottest reads (GET by id and a page of the list) as the bytes of their answer:
/// in the serve a cached devbox or page is encoded once and its bytes kept with it
/// (`DevboxReadCache`), so polling clients cost neither a read nor an encoding; concurrent
/// requests for a page that is not cached share one read (`DevboxReadCache.lookupPageJSON`).
/// `encode` is the API's encoder (the storage layer does not know the wire format).
extension AppDatabase {
    func devboxJSON(id: String, userId: String?, encode: (Devbox) -> [UInt8]) async throws -> [UInt8]? {
        guard let cache = readCache else { return try await devbox(id: id, userId: userId).map(encode) }
        if let hit = cache.devboxJSON(id: id, userId: userId) { return hit }
        let epoch = cache.epoch
        guard let box = try await devbox(id: id, userId: userId) else { return nil }
        let json = encode(box)
        cache.storeJSON(id: id, json, readSince: epoch)
        return json
    }

    func devboxPageJSON(
        userId: String, _ page: DevboxPageRequest, encode: ([Devbox], DevboxCursor?) -> [UInt8]
    ) async throws -> [UInt8] {
        guard let cache = readCache else {
            let r = try await devboxPage(userId: userId, page)
            return encode(r.devboxes, r.next)
        }
        let key = DevboxReadCache.PageKey(userId: userId, page)
        let flight: PageFlight
        switch cache.lookupPageJSON(key) {
        case .hit(let json):
            return json
        case .join(let leader):
            // The same page, read since the last devbox commit: its bytes, unless that read failed.
            if let json = await leader.wait() { return json }
            let epoch = cache.epoch
            let r = try await devboxPage(userId: userId, page)
            let json = encode(r.devboxes, r.next)
            cache.storePageJSON(key, json, readSince: epoch)
            return json
        case .lead(let mine):
            // Pages of live states need no read: cut from the index, the flight ends at once
            // (whoever joined it gets these bytes).
            if let r = cache.live.page(userId: userId, page) {
                let json = encode(r.devboxes, r.next)
                cache.storePage(key, .init(devboxes: r.devboxes, next: r.next, json: json), readSince: mine.epoch)
                cache.endFlight(key, mine)
                mine.finish(json)
                return json
            }
            flight = mine
        }
        var answer: [UInt8]?
        defer {
            cache.endFlight(key, flight)
            flight.finish(answer)
        }
        let r = try await devboxPage(userId: userId, page)
        let json = encode(r.devboxes, r.next)
        cache.storePageJSON(key, json, readSince: flight.epoch)
        answer = json
        return json
    }
}

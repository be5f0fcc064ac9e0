import DevboxRuntime
import Testing

/// DevboxRuntime's `TailBuffer`, the one tail buffer (exec, setup shell, git, a step's log):
/// whatever the pieces, it holds exactly the last `limit` bytes and says whether it cut.
@Suite("One tail buffer")
struct OneTailBufferTests {
    @Test func exactlyTheLastBytesWhateverThePieces() {
        var rng = SystemRandomNumberGenerator()
        for limit in [0, 1, 10, 1000, 70_000] {
            var t = TailBuffer(limit: limit)
            var all: [UInt8] = []
            for _ in 0..<60 {
                let piece = (0..<Int.random(in: 0...9000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                t.append(piece[...])
                all += piece
                #expect(t.bytes == Array(all.suffix(limit)))
                #expect(t.truncated == (all.count > limit))
            }
            t.trim()
            #expect(t.bytes == Array(all.suffix(limit)) && t.truncated == (all.count > limit))
        }
        var marked = TailBuffer(limit: 10)
        marked.markTruncated()
        #expect(marked.truncated && marked.bytes.isEmpty)
    }
}

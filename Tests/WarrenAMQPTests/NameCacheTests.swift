import CRabbitMQ
import Testing

@testable import WarrenAMQP

@Suite("Name cache of the I/O thread")
struct NameCacheTests {
    func decode(_ bytes: [UInt8], with cache: NameCache) -> String {
        var copy = bytes
        return copy.withUnsafeMutableBytes { cache.string(amqp_bytes_t(len: $0.count, bytes: $0.baseAddress)) }
    }

    @Test func namesReadTheSameWithAndWithoutTheCache() {
        let cache = NameCache()
        let names = [
            "", "short", "application/json", "amq.ctag-0123456789abcdef0123", "warren-published-at",
            "é" + String(repeating: "x", count: 20),
        ]
        for _ in 0..<3 {
            for name in names { #expect(decode(Array(name.utf8), with: cache) == name) }
        }
        // Invalid UTF-8 is repaired exactly as without the cache, the first time and from the cache.
        let invalid: [UInt8] = Array(repeating: 0x61, count: 20) + [0xFF, 0xFE]
        var raw = invalid
        let plain = raw.withUnsafeMutableBytes { amqp_bytes_t(len: $0.count, bytes: $0.baseAddress).string }
        #expect(decode(invalid, with: cache) == plain)
        #expect(decode(invalid, with: cache) == plain)
    }

    @Test func moreNamesThanItHoldsStillReadCorrectly() {
        let cache = NameCache()
        let names = (0..<(NameCache.capacity * 3)).map { "a-header-name-that-is-long-\($0)" }
        for _ in 0..<2 {
            for name in names { #expect(decode(Array(name.utf8), with: cache) == name) }
        }
        let long = String(repeating: "n", count: NameCache.longestName + 10)
        #expect(decode(Array(long.utf8), with: cache) == long)
    }
}

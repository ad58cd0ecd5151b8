import CRabbitMQ
import Foundation

/// Reuses the strings of names that come with every delivery — consumer tags, exchanges, routing keys, content types,
/// message types, header keys — instead of building a new one each time: a Swift string over 15 bytes is a heap
/// allocation, and a busy consumer sees the same few names thousands of times a second.
///
/// Belongs to one connection's I/O thread (not thread-safe, and need not be). Values that differ per message
/// (message ids, header values) are not looked up here.
final class NameCache {
    private var entries: [(bytes: [UInt8], string: String)] = []
    private var nextVictim = 0
    /// Names beyond this many replace the oldest ones.
    static let capacity = 32
    /// Longer names are decoded without the cache.
    static let longestName = 255

    /// The bytes as a string (invalid UTF-8 repaired, like ``amqp_bytes_t/string``).
    func string(_ bytes: amqp_bytes_t) -> String {
        // Up to 15 bytes of UTF-8 fit in the string itself: nothing to save.
        guard bytes.len > 15, bytes.len <= Self.longestName, let base = bytes.bytes else { return bytes.string }
        let incoming = UnsafeRawBufferPointer(start: base, count: bytes.len)
        for index in entries.indices where entries[index].bytes.count == bytes.len {
            let same = entries[index].bytes.withUnsafeBytes { memcmp($0.baseAddress!, base, bytes.len) == 0 }
            if same { return entries[index].string }
        }
        let string = String(decoding: incoming, as: UTF8.self)
        if entries.count < Self.capacity {
            entries.append((Array(incoming), string))
        } else {
            entries[nextVictim] = (Array(incoming), string)
            nextVictim = (nextVictim + 1) % Self.capacity
        }
        return string
    }
}

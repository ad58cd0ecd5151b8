import CRabbitMQ
import Foundation

/// Memory for the C structures of one librabbitmq call (field tables, properties, strings).
///
/// librabbitmq encodes a method or properties into its output buffer before the call returns, so everything
/// allocated here may be given back as soon as that call is done: ``reset()``. The arena hands out memory from one
/// block it keeps across resets (growing it when a call needs more), so a steady stream of publishes allocates
/// nothing. Used on the connection's I/O thread only (and by the package's benchmark, whose raw librabbitmq loop
/// keeps one alive for its whole loop).
package final class CArena {
    private var block: UnsafeMutableRawPointer
    private var blockSize: Int
    private var used = 0
    /// Blocks outgrown since the last reset: still pointed to until then.
    private var outgrown: [UnsafeMutableRawPointer] = []

    /// The block an arena starts with, and the largest it keeps across a reset.
    private static let initialSize = 1024
    private static let largestKept = 64 * 1024

    package init() {
        blockSize = Self.initialSize
        block = malloc(blockSize)!
    }

    deinit {
        free(block)
        for pointer in outgrown { free(pointer) }
    }

    /// Gives back everything handed out so far; no pointer obtained before may be used after this.
    package func reset() {
        for pointer in outgrown { free(pointer) }
        outgrown.removeAll(keepingCapacity: true)
        used = 0
        if blockSize > Self.largestKept {
            free(block)
            blockSize = Self.initialSize
            block = malloc(blockSize)!
        }
    }

    package func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { utf8 in
            // NUL-terminated, so the bytes can also serve as a C string.
            let pointer = raw(byteCount: utf8.count + 1, alignment: 1)
            if let base = utf8.baseAddress { pointer.copyMemory(from: base, byteCount: utf8.count) }
            pointer.storeBytes(of: 0, toByteOffset: utf8.count, as: UInt8.self)
            return amqp_bytes_t(len: utf8.count, bytes: pointer)
        }
    }

    package func bytes(_ array: [UInt8]) -> amqp_bytes_t {
        array.withUnsafeBytes { buffer in
            let pointer = raw(byteCount: buffer.count, alignment: 1)
            if let base = buffer.baseAddress { pointer.copyMemory(from: base, byteCount: buffer.count) }
            return amqp_bytes_t(len: buffer.count, bytes: pointer)
        }
    }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        raw(byteCount: count * MemoryLayout<T>.stride, alignment: MemoryLayout<T>.alignment).bindMemory(
            to: T.self, capacity: count)
    }

    private func raw(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer {
        precondition(alignment <= 16, "malloc's alignment bounds what the arena can align")
        var start = (used + alignment - 1) & ~(alignment - 1)
        if start + byteCount > blockSize {
            outgrown.append(block)
            blockSize = max(blockSize * 2, byteCount)
            block = malloc(blockSize)!
            start = 0
        }
        used = start + byteCount
        return block + start
    }
}

extension amqp_bytes_t {
    static var empty: amqp_bytes_t { amqp_bytes_t(len: 0, bytes: nil) }

    /// Copies the bytes into a Swift array.
    var array: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: bytes, count: len))
    }

    /// The bytes as a string; invalid UTF-8 is repaired with replacement characters (used for names and reply texts).
    var string: String {
        guard len > 0, let bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: len), as: UTF8.self)
    }

    /// The bytes as a string only when they are valid UTF-8.
    var validatedString: String? {
        guard len > 0, let bytes else { return "" }
        return String(validating: UnsafeRawBufferPointer(start: bytes, count: len), as: UTF8.self)
    }
}

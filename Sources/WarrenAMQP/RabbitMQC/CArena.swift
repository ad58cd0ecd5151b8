import CRabbitMQ
import Foundation

/// Memory for the C structures of one librabbitmq call (field tables, properties, strings).
///
/// librabbitmq encodes a method or properties into its output buffer before the call returns, so everything
/// allocated here may be freed as soon as that call is done. Used on the connection's I/O thread only (and by the
/// package's benchmark, whose raw librabbitmq loop keeps one alive for its whole loop).
package final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    package init() {}

    deinit {
        for pointer in allocations { free(pointer) }
    }

    package func bytes(_ string: String) -> amqp_bytes_t {
        var utf8 = string.utf8CString  // NUL-terminated, so the bytes can also serve as a C string
        return utf8.withUnsafeMutableBytes { buffer in
            let length = buffer.count - 1
            let pointer = copy(UnsafeRawBufferPointer(buffer))
            return amqp_bytes_t(len: length, bytes: pointer)
        }
    }

    package func bytes(_ array: [UInt8]) -> amqp_bytes_t {
        array.withUnsafeBytes { buffer in amqp_bytes_t(len: buffer.count, bytes: copy(buffer)) }
    }

    func cString(_ string: String) -> UnsafePointer<CChar> {
        UnsafePointer(bytes(string).bytes.assumingMemoryBound(to: CChar.self))
    }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = malloc(max(1, count * MemoryLayout<T>.stride))!
        allocations.append(raw)
        return raw.bindMemory(to: T.self, capacity: count)
    }

    private func copy(_ buffer: UnsafeRawBufferPointer) -> UnsafeMutableRawPointer {
        let raw = malloc(max(1, buffer.count))!
        allocations.append(raw)
        if let base = buffer.baseAddress { raw.copyMemory(from: base, byteCount: buffer.count) }
        return raw
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

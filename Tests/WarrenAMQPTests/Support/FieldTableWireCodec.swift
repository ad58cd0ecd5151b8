import CRabbitMQ

@testable import WarrenAMQP

/// Encodes and decodes field tables through librabbitmq's own wire codec, to check that a table survives the wire
/// unchanged.
enum FieldTableWireCodec {
    /// The wire bytes of `table` (its 4-byte length prefix included), as librabbitmq encodes it.
    /// `arena` is reset before this returns.
    static func encode(_ table: AMQPTable, in arena: CArena = CArena()) -> [UInt8]? {
        defer { arena.reset() }
        var cTable = arena.table(table)
        var capacity = 4096
        while capacity <= 64 * 1024 * 1024 {
            var buffer = [UInt8](repeating: 0, count: capacity)
            var offset = 0
            let status = buffer.withUnsafeMutableBytes { raw in
                amqp_encode_table(amqp_bytes_t(len: raw.count, bytes: raw.baseAddress), &cTable, &offset)
            }
            if status == AMQP_STATUS_OK.rawValue { return Array(buffer[..<offset]) }
            if status != AMQP_STATUS_TABLE_TOO_BIG.rawValue { return nil }
            capacity *= 4
        }
        return nil
    }

    /// Decodes wire bytes produced by ``encode(_:)`` (or by a broker) back into a table.
    static func decode(_ bytes: [UInt8]) -> AMQPTable? {
        var pool = amqp_pool_t()
        init_amqp_pool(&pool, 4096)
        defer { empty_amqp_pool(&pool) }
        var output = amqp_table_t()
        var offset = 0
        var copy = bytes
        let status = copy.withUnsafeMutableBytes { raw in
            amqp_decode_table(amqp_bytes_t(len: raw.count, bytes: raw.baseAddress), &pool, &output, &offset)
        }
        guard status == AMQP_STATUS_OK.rawValue else { return nil }
        return AMQPTable(output)
    }
}

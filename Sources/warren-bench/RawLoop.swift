import CRabbitMQ
import CRabbitMQShims
import Foundation
import Warren
import WarrenAMQP

/// The baseline: a plain librabbitmq loop, the way a C program would write it, run on a thread of its own.
struct RawLoop {
    var host: String
    var port: Int
    var user: String
    var password: String
    var vhost: String
    var queue: String

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Publishes `count` messages without confirms to the loop's queue, cycling through `messages` (their
    /// destinations are ignored). Their C properties are built before the clock starts. Returns the seconds spent.
    func publish(count: Int, cycling messages: [OutboundMessage]) throws -> Double {
        let storage = CPropertiesStorage()
        var properties = try messages.map { try storage.properties($0.properties) }
        let bodies = messages.map { storage.bytes($0.body) }
        return try withConnection { connection in
            let start = DispatchTime.now()
            try queue.withCString { queueName in
                for index in 0..<count {
                    let which = index % messages.count
                    let status = amqp_basic_publish(
                        connection, 1, amqp_cstring_bytes(""), amqp_cstring_bytes(queueName), 0, 0, &properties[which], bodies[which])
                    if status != 0 { throw Failure(description: "publish failed: \(status)") }
                }
            }
            // Make sure the broker has taken all of it before the clock stops: a passive declare is answered after
            // every earlier frame on the channel was processed.
            _ = try passiveCount(connection)
            return seconds(since: start)
        }
    }

    /// Consumes and acks `count` messages; acks one by one (`ackEvery` 1) or every `ackEvery` with `multiple`.
    func consume(count: Int, prefetch: UInt16, ackEvery: Int) throws -> Double {
        try withConnection { connection in
            amqp_basic_qos(connection, 1, 0, prefetch, 0)
            try check(amqp_get_rpc_reply(connection), "basic.qos")
            _ = queue.withCString { name in
                amqp_basic_consume(connection, 1, amqp_cstring_bytes(name), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
            }
            try check(amqp_get_rpc_reply(connection), "basic.consume")
            let start = DispatchTime.now()
            var envelope = amqp_envelope_t()
            for n in 1...count {
                amqp_maybe_release_buffers(connection)
                let reply = amqp_consume_message(connection, &envelope, nil, 0)
                try check(reply, "consume")
                if n % ackEvery == 0 || n == count {
                    amqp_basic_ack(connection, 1, envelope.delivery_tag, ackEvery > 1 ? 1 : 0)
                }
                amqp_destroy_envelope(&envelope)
            }
            return seconds(since: start)
        }
    }

    func passiveCount(_ connection: amqp_connection_state_t) throws -> Int {
        let ok = queue.withCString { name in
            amqp_queue_declare(connection, 1, amqp_cstring_bytes(name), 1, 0, 0, 0, amqp_empty_table)
        }
        try check(amqp_get_rpc_reply(connection), "queue.declare")
        return Int(ok?.pointee.message_count ?? 0)
    }

    private func withConnection<T>(_ body: (amqp_connection_state_t) throws -> T) throws -> T {
        guard let connection = amqp_new_connection(), let socket = amqp_tcp_socket_new(connection) else {
            throw Failure(description: "cannot allocate a connection")
        }
        defer { amqp_destroy_connection(connection) }
        guard amqp_socket_open(socket, host, Int32(port)) == 0 else { throw Failure(description: "cannot connect to \(host):\(port)") }
        try check(warren_amqp_login_plain(connection, vhost, 0, 131_072, 0, nil, user, password), "login")
        amqp_channel_open(connection, 1)
        try check(amqp_get_rpc_reply(connection), "channel.open")
        defer {
            amqp_channel_close(connection, 1, AMQP_REPLY_SUCCESS)
            amqp_connection_close(connection, AMQP_REPLY_SUCCESS)
        }
        return try body(connection)
    }

    private func check(_ reply: amqp_rpc_reply_t, _ what: String) throws {
        if reply.reply_type != AMQP_RESPONSE_NORMAL {
            throw Failure(description: "\(what) failed (reply type \(reply.reply_type.rawValue), library error \(reply.library_error))")
        }
    }
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

/// Runs blocking work on a dedicated thread, never on Swift's cooperative pool.
func onDedicatedThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// The C side of the raw loop's messages: librabbitmq's property structs and the memory they point to, freed with
/// this object.
private final class CPropertiesStorage {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        for pointer in allocations { free(pointer) }
    }

    func bytes(_ bytes: [UInt8]) -> amqp_bytes_t {
        let pointer = malloc(max(1, bytes.count))!
        allocations.append(pointer)
        bytes.withUnsafeBytes { if let base = $0.baseAddress { pointer.copyMemory(from: base, byteCount: $0.count) } }
        return amqp_bytes_t(len: bytes.count, bytes: pointer)
    }

    func bytes(_ string: String) -> amqp_bytes_t { bytes(Array(string.utf8)) }

    func properties(_ properties: AMQPProperties) throws -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: Int32 = 0
        func string(_ value: String?, _ flag: Int32) -> amqp_bytes_t {
            guard let value else { return amqp_bytes_t(len: 0, bytes: nil) }
            flags |= flag
            return bytes(value)
        }
        c.content_type = string(properties.contentType, AMQP_BASIC_CONTENT_TYPE_FLAG)
        c.content_encoding = string(properties.contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG)
        c.correlation_id = string(properties.correlationID, AMQP_BASIC_CORRELATION_ID_FLAG)
        c.reply_to = string(properties.replyTo, AMQP_BASIC_REPLY_TO_FLAG)
        c.expiration = string(properties.expiration, AMQP_BASIC_EXPIRATION_FLAG)
        c.message_id = string(properties.messageID, AMQP_BASIC_MESSAGE_ID_FLAG)
        c.type = string(properties.type, AMQP_BASIC_TYPE_FLAG)
        c.user_id = string(properties.userID, AMQP_BASIC_USER_ID_FLAG)
        c.app_id = string(properties.appID, AMQP_BASIC_APP_ID_FLAG)
        c.cluster_id = string(properties.clusterID, AMQP_BASIC_CLUSTER_ID_FLAG)
        if let mode = properties.deliveryMode {
            flags |= AMQP_BASIC_DELIVERY_MODE_FLAG
            c.delivery_mode = mode.rawValue
        }
        if let priority = properties.priority {
            flags |= AMQP_BASIC_PRIORITY_FLAG
            c.priority = priority
        }
        if let timestamp = properties.timestamp {
            flags |= AMQP_BASIC_TIMESTAMP_FLAG
            c.timestamp = UInt64(timestamp.timeIntervalSince1970)
        }
        if let headers = properties.headers, !headers.isEmpty {
            flags |= AMQP_BASIC_HEADERS_FLAG
            let entries = malloc(headers.count * MemoryLayout<amqp_table_entry_t>.stride)!.bindMemory(to: amqp_table_entry_t.self, capacity: headers.count)
            allocations.append(UnsafeMutableRawPointer(entries))
            for (index, (key, value)) in headers.sorted(by: { $0.key < $1.key }).enumerated() {
                var field = amqp_field_value_t()
                switch value {
                case .int64(let number):
                    field.kind = Character("l").asciiValue!
                    field.value.i64 = number
                case .string(let text):
                    field.kind = Character("S").asciiValue!
                    field.value.bytes = bytes(text)
                default:
                    throw RawLoop.Failure(description: "the raw loop sends int64 and string headers only, not \(value)")
                }
                entries[index] = amqp_table_entry_t(key: bytes(key), value: field)
            }
            c.headers = amqp_table_t(num_entries: Int32(headers.count), entries: entries)
        }
        c._flags = UInt32(flags)
        return c
    }
}

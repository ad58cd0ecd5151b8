import CRabbitMQ
import CRabbitMQShims
import Foundation
@_spi(WarrenTransport) import Warren
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
        try withCMessages(messages) { properties, bodies in
            try withConnection { connection in
                let start = DispatchTime.now()
                try queue.withCString { queueName in
                    for index in 0..<count {
                        let which = index % messages.count
                        let status = amqp_basic_publish(
                            connection, 1, amqp_cstring_bytes(""), amqp_cstring_bytes(queueName), 0, 0,
                            &properties[which], bodies[which])
                        if status != 0 { throw Failure(description: "publish failed: \(status)") }
                    }
                }
                // Make sure the broker has taken all of it before the clock stops: a passive declare is answered
                // after every earlier frame on the channel was processed.
                _ = try passiveCount(connection)
                return seconds(since: start)
            }
        }
    }

    /// How a confirmed raw loop paces its publishes.
    enum Pacing {
        /// `n` publishes, then read frames until the broker confirmed all of them, then the next `n`.
        case batches(Int)
        /// Never stop: keep up to `n` publishes unconfirmed, reading the confirms that have arrived (without waiting)
        /// every 64 publishes.
        case window(Int)
    }

    /// Publishes `count` messages like ``publish(count:cycling:)`` but in confirm mode, the way a C program would. What
    /// the broker itself pays for confirms, without any of Warren's code. Returns the seconds spent.
    func publishConfirmed(count: Int, pacing: Pacing, cycling messages: [OutboundMessage]) throws -> Double {
        try withCMessages(messages) { properties, bodies in
            try withConnection { connection in
                amqp_confirm_select(connection, 1)
                try check(amqp_get_rpc_reply(connection), "confirm.select")
                let start = DispatchTime.now()
                var published: UInt64 = 0
                var confirmed: UInt64 = 0
                var frame = amqp_frame_t()
                var noWait = timeval(tv_sec: 0, tv_usec: 0)
                /// Reads one frame (waiting for it when `wait`); false when none was there.
                func readFrame(wait: Bool) throws -> Bool {
                    amqp_maybe_release_buffers(connection)
                    let status =
                        wait
                        ? amqp_simple_wait_frame(connection, &frame)
                        : amqp_simple_wait_frame_noblock(connection, &frame, &noWait)
                    if status == AMQP_STATUS_TIMEOUT.rawValue { return false }
                    if status != 0 { throw Failure(description: "reading confirms failed: \(status)") }
                    guard frame.frame_type == AMQP_FRAME_METHOD else { return true }
                    switch frame.payload.method.id {
                    case AMQP_BASIC_ACK_METHOD:
                        let ack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                        confirmed = ack.multiple != 0 ? max(confirmed, ack.delivery_tag) : confirmed + 1
                    case AMQP_BASIC_NACK_METHOD:
                        throw Failure(description: "the broker nacked a publish")
                    default:
                        break
                    }
                    return true
                }
                try queue.withCString { queueName in
                    while published < count {
                        switch pacing {
                        case .batches(let size):
                            if published > 0 && published % UInt64(size) == 0 {
                                while confirmed < published { _ = try readFrame(wait: true) }
                            }
                        case .window(let size):
                            while published - confirmed >= UInt64(size) { _ = try readFrame(wait: true) }
                        }
                        let which = Int(published) % messages.count
                        let status = amqp_basic_publish(
                            connection, 1, amqp_cstring_bytes(""), amqp_cstring_bytes(queueName), 0, 0,
                            &properties[which], bodies[which])
                        if status != 0 { throw Failure(description: "publish failed: \(status)") }
                        published += 1
                        if case .window = pacing, published % 64 == 0 { while try readFrame(wait: false) {} }
                    }
                    while confirmed < published { _ = try readFrame(wait: true) }
                }
                return seconds(since: start)
            }
        }
    }

    /// Runs `body` with the C properties and bodies of `messages`, built before it (and its clock) starts with the same
    /// conversion WarrenAMQP uses; the arena keeps them alive until `body` returns.
    private func withCMessages<T>(
        _ messages: [OutboundMessage], _ body: (inout [amqp_basic_properties_t], [amqp_bytes_t]) throws -> T
    ) rethrows -> T {
        let arena = CArena()
        var properties = messages.map { arena.properties($0.properties) }
        let bodies = messages.map { arena.bytes($0.body) }
        return try withExtendedLifetime(arena) { try body(&properties, bodies) }
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
        guard amqp_socket_open(socket, host, Int32(port)) == 0 else {
            throw Failure(description: "cannot connect to \(host):\(port)")
        }
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
            throw Failure(
                description:
                    "\(what) failed (reply type \(reply.reply_type.rawValue), library error \(reply.library_error))")
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

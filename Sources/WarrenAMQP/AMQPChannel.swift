import Foundation

/// An AMQP channel: topology, consuming, settling and publishing.
///
/// Safe to use from several tasks at once; synchronous methods (declare, bind, qos, …) are sent one at a time in the
/// order they were called, as AMQP requires. When the broker closes the channel with an exception (a 404 on a
/// missing queue, a 406 on a redeclare with other arguments, …) the pending call throws ``AMQPError`` with
/// ``AMQPError/Code/channelClosed`` and that reply code, and the channel is unusable: open a new one.
///
/// Cancelling the task that awaits a method does not withdraw the method: it was already sent.
public final class AMQPChannel: Sendable, CustomStringConvertible {
    /// The connection this channel belongs to (kept alive while the channel is).
    public let connection: AMQPConnection
    /// The channel number.
    public let id: UInt16
    let handle: ChannelHandle

    init(connection: AMQPConnection, handle: ChannelHandle) {
        self.connection = connection
        self.id = handle.id
        self.handle = handle
    }

    public var description: String { "AMQPChannel(\(id))" }

    /// Whether the channel is still usable.
    public var isOpen: Bool { handle.closeReason == nil && connection.isOpen }

    /// Why the channel closed, once it has.
    public var closeReason: AMQPError? { handle.closeReason ?? connection.closeReason }

    @discardableResult
    func call(_ method: ChannelMethod) async throws -> MethodReply {
        try await withUnsafeThrowingContinuation { continuation in
            connection.core.submit(.method(channel: handle, method, continuation))
        }
    }

    // MARK: Channel

    /// Closes the channel (`channel.close`). Its consumers end; unacknowledged deliveries return to their queues.
    public func close() async throws {
        if handle.closeReason != nil { return }
        try await call(.channelClose)
    }

    /// Puts the channel in confirm mode (`confirm.select`): from now on every ``publish(_:exchange:routingKey:mandatory:properties:)``
    /// returns only once the broker has taken responsibility for the message, and throws when it did not.
    /// - Parameter confirmTimeout: how long a publish waits for its confirm before it throws
    ///   ``AMQPError/Code/timeout`` (checked every 100 ms); `nil` waits as long as the connection lives. A broker that
    ///   stops answering is also noticed through missed heartbeats, which fail every waiting publish.
    public func enableConfirms(confirmTimeout: Duration? = .seconds(30)) async throws {
        try await call(.confirmSelect(timeout: confirmTimeout))
    }

    /// Limits how many unacknowledged deliveries the broker sends (`basic.qos`).
    /// - Parameters:
    ///   - prefetchCount: the limit; 0 means none.
    ///   - global: `false` (the usual) applies the limit to each consumer started afterwards on this channel;
    ///     `true` shares it across the channel's consumers.
    public func qos(prefetchCount: UInt16, global: Bool = false) async throws {
        try await call(.basicQos(prefetchCount: prefetchCount, global: global))
    }

    // MARK: Exchanges

    /// Declares an exchange (`exchange.declare`); idempotent when it exists with the same settings.
    /// - Throws: ``AMQPError`` 406 (`PRECONDITION_FAILED`) when it exists with other settings; 404 with `passive`
    ///   when it does not exist.
    public func exchangeDeclare(
        _ name: String, type: AMQPExchangeType = .direct, passive: Bool = false, durable: Bool = true,
        autoDelete: Bool = false, internal: Bool = false, arguments: AMQPTable = [:]
    ) async throws {
        try await call(
            .exchangeDeclare(
                name: name, type: type.name, passive: passive, durable: durable, autoDelete: autoDelete,
                isInternal: `internal`,
                arguments: arguments))
    }

    /// Deletes an exchange (`exchange.delete`).
    public func exchangeDelete(_ name: String, ifUnused: Bool = false) async throws {
        try await call(.exchangeDelete(name: name, ifUnused: ifUnused))
    }

    /// Binds exchange `destination` to exchange `source` (a RabbitMQ extension).
    public func exchangeBind(destination: String, source: String, routingKey: String = "", arguments: AMQPTable = [:])
        async throws
    {
        try await call(
            .exchangeBind(destination: destination, source: source, routingKey: routingKey, arguments: arguments))
    }

    public func exchangeUnbind(destination: String, source: String, routingKey: String = "", arguments: AMQPTable = [:])
        async throws
    {
        try await call(
            .exchangeUnbind(destination: destination, source: source, routingKey: routingKey, arguments: arguments))
    }

    // MARK: Queues

    /// Declares a queue (`queue.declare`), or with `passive` checks that it exists.
    ///
    /// Arguments are RabbitMQ's `x-` arguments, e.g. `["x-queue-type": "quorum", "x-delivery-limit": 5]`,
    /// `"x-message-ttl"`, `"x-dead-letter-exchange"`, `"x-dead-letter-routing-key"`, `"x-single-active-consumer"`,
    /// `"x-max-length"`.
    /// - Parameter name: the queue; an empty name asks the broker to generate one (returned in the result).
    /// - Returns: the queue's name, and its ready-message and consumer counts.
    /// - Throws: ``AMQPError`` 406 when the queue exists with other settings or arguments; 404 with `passive` when
    ///   it does not exist; 405 (`RESOURCE_LOCKED`) when another connection holds it exclusively.
    @discardableResult
    public func queueDeclare(
        _ name: String = "", passive: Bool = false, durable: Bool = true, exclusive: Bool = false,
        autoDelete: Bool = false, arguments: AMQPTable = [:]
    ) async throws -> AMQPQueueStatus {
        let reply = try await call(
            .queueDeclare(
                name: name, passive: passive, durable: durable, exclusive: exclusive, autoDelete: autoDelete,
                arguments: arguments))
        guard case .queueDeclared(let name, let messages, let consumers) = reply else { throw unexpectedReply() }
        return AMQPQueueStatus(name: name, messageCount: Int(messages), consumerCount: Int(consumers))
    }

    /// Counts a queue's ready messages and consumers without changing it (a passive declare).
    /// - Throws: ``AMQPError`` 404 when it does not exist (which closes the channel).
    public func queueStatus(_ name: String) async throws -> AMQPQueueStatus {
        try await queueDeclare(name, passive: true)
    }

    public func queueBind(_ queue: String, exchange: String, routingKey: String = "", arguments: AMQPTable = [:])
        async throws
    {
        try await call(.queueBind(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments))
    }

    public func queueUnbind(_ queue: String, exchange: String, routingKey: String = "", arguments: AMQPTable = [:])
        async throws
    {
        try await call(.queueUnbind(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments))
    }

    /// Removes every ready message of a queue. - Returns: how many were removed.
    @discardableResult
    public func queuePurge(_ name: String) async throws -> Int {
        guard case .messageCount(let count) = try await call(.queuePurge(name: name)) else { throw unexpectedReply() }
        return Int(count)
    }

    /// Deletes a queue. - Returns: how many messages it held.
    @discardableResult
    public func queueDelete(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws -> Int {
        guard
            case .messageCount(let count) = try await call(
                .queueDelete(name: name, ifUnused: ifUnused, ifEmpty: ifEmpty))
        else {
            throw unexpectedReply()
        }
        return Int(count)
    }

    // MARK: Consuming

    /// Starts a consumer on `queue` (`basic.consume`) and returns its deliveries as an `AsyncSequence`.
    ///
    /// Set a prefetch (``qos(prefetchCount:global:)`` before, or `prefetchCount` here) so the broker never has more
    /// than that many unacknowledged deliveries out: the client buffers no more than that. The sequence ends
    /// normally after ``AMQPConsumer/cancel()`` or ``close()``, and throws ``AMQPError`` when the broker cancels the
    /// consumer (``AMQPError/Code/consumerCancelled``, e.g. its queue was deleted) or the channel or connection fails.
    ///
    /// - Parameters:
    ///   - prefetchCount: when given, sets this consumer's prefetch with `basic.qos` first.
    ///   - noAck: the broker considers a message settled as soon as it is sent (no ack needed, none possible).
    ///   - exclusive: no other consumer may consume from the queue meanwhile.
    ///   - arguments: consumer arguments, e.g. `x-priority`.
    public func consume(
        queue: String, prefetchCount: UInt16? = nil, noAck: Bool = false, exclusive: Bool = false,
        consumerTag: String? = nil, arguments: AMQPTable = [:]
    ) async throws -> AMQPConsumer {
        if let prefetchCount { try await qos(prefetchCount: prefetchCount) }
        let tag = consumerTag ?? "warren-\(UUID().uuidString.lowercased())"
        let sink = ConsumerSink(acknowledges: !noAck)
        let method = ChannelMethod.basicConsume(
            queue: queue, consumerTag: tag, noAck: noAck, exclusive: exclusive, arguments: arguments)
        _ = try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<MethodReply, any Error>) in
            connection.core.submit(.consume(channel: handle, method, sink, continuation))
        }
        return AMQPConsumer(channel: self, tag: tag, sink: sink)
    }

    func cancel(consumerTag: String) async throws {
        try await call(.basicCancel(consumerTag: consumerTag))
    }

    /// Fetches one message (`basic.get`), or `nil` when the queue is empty. Meant for inspection tools; a consumer
    /// is far more efficient for steady work.
    /// - Parameter noAck: take the message off the queue at once. Otherwise settle it like a delivery.
    public func get(queue: String, noAck: Bool = false) async throws -> AMQPGetResult? {
        switch try await call(.basicGet(queue: queue, noAck: noAck)) {
        case .gotMessage(let message):
            return AMQPGetResult(
                delivery: AMQPDelivery(message, channel: self), messageCount: Int(message.messageCount))
        case .getEmpty:
            return nil
        default:
            throw unexpectedReply()
        }
    }

    // MARK: Settling

    /// Acknowledges a delivery (`basic.ack`), or with `multiple` every unacknowledged delivery up to and including it.
    ///
    /// Queued to the connection's thread without waiting: AMQP has no reply to an ack. A delivery tag belongs to
    /// the channel that received it.
    /// - Throws: ``AMQPError`` when the channel is already closed (the broker then redelivers the message).
    public func ack(deliveryTag: UInt64, multiple: Bool = false) throws(AMQPError) {
        try settle(.ack(deliveryTag: deliveryTag, multiple: multiple))
    }

    /// Negatively acknowledges (`basic.nack`): with `requeue` the message goes back to its queue, otherwise it is
    /// dead-lettered (when the queue has a dead-letter exchange) or dropped.
    public func nack(deliveryTag: UInt64, multiple: Bool = false, requeue: Bool = true) throws(AMQPError) {
        try settle(.nack(deliveryTag: deliveryTag, multiple: multiple, requeue: requeue))
    }

    /// Rejects one delivery (`basic.reject`); see ``nack(deliveryTag:multiple:requeue:)``.
    public func reject(deliveryTag: UInt64, requeue: Bool = true) throws(AMQPError) {
        try settle(.reject(deliveryTag: deliveryTag, requeue: requeue))
    }

    private func settle(_ settlement: SettlementMethod) throws(AMQPError) {
        if let reason = closeReason { throw reason }
        // A plain ack is held by the connection's thread anyway (coalesced with its neighbours): with a wide enough
        // prefetch window it need not wake it until a batch of them waits.
        let lazyLimit: Int? = if case .ack(_, false) = settlement { handle.lazyAckLimit } else { nil }
        guard connection.core.submit(.settle(channel: handle, settlement), lazyLimit: lazyLimit) else {
            throw closeReason ?? AMQPError(.connectionClosed, message: "the connection is closed")
        }
    }

    // MARK: Publishing

    /// Publishes a message (`basic.publish`).
    ///
    /// On a channel in confirm mode (``enableConfirms()``) this returns once the broker confirmed the message
    /// (written to disk for a persistent message on a durable queue). Many publishes may be in flight at once from
    /// several tasks; each returns when its own confirm arrives. Without confirm mode it returns once the message is
    /// written to the socket.
    ///
    /// - Throws: ``AMQPError`` with ``AMQPError/Code/unroutable`` when `mandatory` is set and no queue received it
    ///   (confirm mode only), ``AMQPError/Code/nacked`` when the broker refused it, ``AMQPError/Code/channelClosed``
    ///   (e.g. 404 for a missing exchange) or a connection error. A message whose publish threw may or may not
    ///   have been enqueued when the failure is a connection loss.
    public func publish(
        _ body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) async throws {
        let message = AMQPOutboundMessage(
            body: body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            connection.core.submit(.publish(channel: handle, message, .single(continuation)))
        }
    }

    /// Publishes a batch, pipelined: every message is written before any confirm is awaited.
    /// - Returns: one result per message, in order (see ``publish(_:exchange:routingKey:mandatory:properties:)``
    ///   for the failures).
    public func publish(contentsOf messages: [AMQPOutboundMessage]) async -> [Result<Void, AMQPError>] {
        guard !messages.isEmpty else { return [] }
        let batch = PublishBatch(count: messages.count)
        for (index, message) in messages.enumerated() {
            connection.core.submit(.publish(channel: handle, message, .batch(batch, index: index)))
        }
        return await batch.wait()
    }

    private func unexpectedReply() -> AMQPError {
        AMQPError(.protocolError, message: "the broker sent an unexpected reply")
    }
}

/// The type of an exchange.
public struct AMQPExchangeType: Sendable, Hashable, ExpressibleByStringLiteral {
    public let name: String
    public init(_ name: String) { self.name = name }
    public init(stringLiteral value: String) { self.name = value }

    public static let direct = AMQPExchangeType("direct")
    public static let fanout = AMQPExchangeType("fanout")
    public static let topic = AMQPExchangeType("topic")
    public static let headers = AMQPExchangeType("headers")
}

/// A queue's name and counts, as `queue.declare-ok` reports them.
public struct AMQPQueueStatus: Sendable, Hashable {
    public var name: String
    /// Messages ready for delivery (not counting those delivered and not yet acknowledged).
    public var messageCount: Int
    public var consumerCount: Int
}

/// The answer to ``AMQPChannel/get(queue:noAck:)``.
public struct AMQPGetResult: Sendable {
    public var delivery: AMQPDelivery
    /// Messages left in the queue after this one.
    public var messageCount: Int
}

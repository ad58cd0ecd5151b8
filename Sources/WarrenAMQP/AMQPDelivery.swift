/// A message delivered to a consumer (or fetched with `basic.get`), with what is needed to settle it.
public struct AMQPDelivery: Sendable {
    public var body: [UInt8]
    public var properties: AMQPProperties
    /// Identifies the delivery on its channel, for ack, nack and reject.
    public var deliveryTag: UInt64
    /// Whether the broker delivered this message before (to this or another consumer) without it being acked.
    public var redelivered: Bool
    /// The exchange the message was published to (empty for the default exchange).
    public var exchange: String
    public var routingKey: String
    /// The consumer it was delivered to; empty for `basic.get`.
    public var consumerTag: String
    /// The channel it arrived on: settle it there.
    public let channel: AMQPChannel

    init(_ message: InboundMessage, channel: AMQPChannel) {
        body = message.body
        properties = message.properties
        deliveryTag = message.deliveryTag
        redelivered = message.redelivered
        exchange = message.exchange
        routingKey = message.routingKey
        consumerTag = message.consumerTag
        self.channel = channel
    }

    /// Acknowledges this delivery; see ``AMQPChannel/ack(deliveryTag:multiple:)``.
    public func ack(multiple: Bool = false) throws(AMQPError) {
        try channel.ack(deliveryTag: deliveryTag, multiple: multiple)
    }

    /// Negatively acknowledges this delivery; see ``AMQPChannel/nack(deliveryTag:multiple:requeue:)``.
    public func nack(multiple: Bool = false, requeue: Bool = true) throws(AMQPError) {
        try channel.nack(deliveryTag: deliveryTag, multiple: multiple, requeue: requeue)
    }

    /// Rejects this delivery; see ``AMQPChannel/reject(deliveryTag:requeue:)``.
    public func reject(requeue: Bool = true) throws(AMQPError) {
        try channel.reject(deliveryTag: deliveryTag, requeue: requeue)
    }
}

/// The deliveries of one consumer, as an `AsyncSequence`.
///
/// Iterate it from one task. It ends normally after ``cancel()`` (once the deliveries already received are
/// consumed) or when its channel is closed by the client, and throws ``AMQPError`` when the broker cancels the
/// consumer or the channel or connection fails. Deliveries that were received but not acknowledged when the
/// channel closes go back to the queue.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    public let channel: AMQPChannel
    /// The consumer tag.
    public let tag: String
    let sink: ConsumerSink

    init(channel: AMQPChannel, tag: String, sink: ConsumerSink) {
        self.channel = channel
        self.tag = tag
        self.sink = sink
    }

    /// Stops the consumer (`basic.cancel`). Deliveries already received are still yielded; then the sequence ends.
    public func cancel() async throws {
        try await channel.cancel(consumerTag: tag)
    }

    /// Deliveries the broker has sent this consumer so far. Read from any thread: a consumer loop that has taken
    /// fewer has work waiting for it (a health check's view).
    public var receivedDeliveries: Int { sink.received }

    /// The next delivery, as the iterator would return it; for code that cannot hold a mutable iterator. Call it from
    /// one task at a time.
    public func next() async throws -> AMQPDelivery? {
        guard let message = try await sink.next() else { return nil }
        return AMQPDelivery(message, channel: channel)
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(sink: sink, channel: channel)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let sink: ConsumerSink
        let channel: AMQPChannel

        public mutating func next() async throws -> AMQPDelivery? {
            guard let message = try await sink.next() else { return nil }
            return AMQPDelivery(message, channel: channel)
        }
    }
}

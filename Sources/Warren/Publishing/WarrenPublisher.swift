import Foundation
import Tracing
import WarrenAMQP

/// Publishes typed messages through a transport: for services that only publish, and for handlers (through
/// ``MessageContext/publish(_:to:headers:)``) whose messages carry the correlation forward.
///
/// Every message gets a message id (returned), a timestamp, its codec's content type, its `type`, persistent
/// delivery, and the correlation and causation ids given. On RabbitMQ the publish is confirmed and `mandatory`, so a
/// message that reaches no queue is an error, never a silent loss.
///
/// Each message carries the trace context it was created in (``TracingOptions``): with a tracer, a publish is a
/// producer span `publish <destination>` whose context goes into the headers; without one, a message published while
/// a delivery with a valid W3C context is handled carries that context on.
public struct WarrenPublisher: Sendable {
    public let transport: any WarrenTransport
    public let codec: any MessageCodec
    /// Written as the AMQP `app_id`.
    public let appID: String?
    public let tracing: TracingOptions
    /// Where each confirmed publish is reported as a `published` job event, when given (``WarrenEventPublisher``).
    public let events: WarrenEventPublisher?

    public init(
        transport: any WarrenTransport, codec: any MessageCodec = JSONMessageCodec(), appID: String? = nil,
        tracing: TracingOptions = TracingOptions(), events: WarrenEventPublisher? = nil
    ) {
        self.transport = transport
        self.codec = codec
        self.appID = appID
        self.tracing = tracing
        self.events = events
    }

    /// Reports a confirmed publish.
    private func published(_ properties: AMQPProperties, to destination: Destination) {
        guard let events else { return }
        let (exchange, routingKey) = MessagingSpan.exchangeAndRoutingKey(of: destination)
        let queue: String
        if case .partitioned(let flow) = destination {
            queue = flow.name  // its partition is the broker's choice: the worker's events name it
        } else {
            queue = exchange.isEmpty ? routingKey : "\(exchange):\(routingKey)"
        }
        var event = WarrenEvent(
            event: .published, messageID: properties.messageID, type: properties.type, queue: queue,
            atMs: Int64(Date().timeIntervalSince1970 * 1000),
            traceID: properties.headers?[TraceHeader.traceParent]?.stringValue.flatMap(
                IncomingTrace.ids(ofTraceParent:))?.traceID,
            correlationID: properties.correlationID)
        event.describeTiming(from: properties.headers)
        events.record(event)
    }

    /// Header carrying the id of the message whose handling caused this one.
    public static let causationHeader = "x-warren-causation-id"

    /// Declares `queue` as a worker would at its start — the work queue, its dead letters, the delay queues `retry`
    /// can need — so that a service that only publishes can publish to it before any worker has run (until then a
    /// publish to it fails as unroutable). Idempotent: a worker that starts later finds the queues as it declares them.
    /// Starts the transport when it is not started yet.
    /// - Parameter retry: the retry policy of the queue's handlers, for its delay queues (a worker declares any that
    ///   are missing anyway).
    /// - Throws: ``WarrenError`` with ``WarrenError/Code/topologyConflict`` when one of the queues exists with other
    ///   arguments; the transport's error when it cannot connect.
    public func declare(queue: String, retry: RetryPolicy = .default) async throws {
        try await transport.start()
        try await transport.prepare(queue: queue, delays: retry.possibleDelays)
    }

    /// Publishes `message` and returns its message id once the transport confirmed it.
    /// - Parameters:
    ///   - destination: usually `.queue(name)` or `.exchange(name, routingKey:)`.
    ///   - correlationID: ties together every message of one business flow.
    ///   - causationID: the message whose handling caused this one.
    /// - Throws: the codec's error, or the transport's (for RabbitMQ: `AMQPError` `.unroutable`, `.nacked`, …).
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, messageID: String = Self.newMessageID(),
        correlationID: String? = nil, causationID: String? = nil, headers: AMQPTable = [:]
    ) async throws -> String {
        var outbound = try outboundMessage(
            message, to: destination, messageID: messageID, correlationID: correlationID, causationID: causationID,
            headers: headers)
        guard let tracer = tracing.activeTracer else {
            try await transport.publish(outbound.body, to: destination, properties: outbound.properties)
            published(outbound.properties, to: destination)
            return messageID
        }
        let span = producerSpan(tracer, to: destination, messageID: messageID, correlationID: correlationID, count: 1)
        defer { span.end() }
        var properties = outbound.properties
        var traced = properties.headers ?? [:]
        tracer.inject(span.context, into: &traced, using: AMQPHeadersInjector())
        properties.headers = traced
        outbound.properties = properties
        do {
            try await transport.publish(outbound.body, to: destination, properties: outbound.properties)
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
        published(outbound.properties, to: destination)
        return messageID
    }

    /// The key that orders `message` in `flow`: its ``PartitionedMessage/partitionKey``, else the
    /// `x-warren-partition-key` header the caller gave.
    private static func partitionKey(of message: some WarrenMessage, headers: AMQPTable, in flow: PartitionedFlow)
        throws -> String
    {
        guard
            let key = (message as? any PartitionedMessage)?.partitionKey
                ?? headers[WarrenHeader.partitionKey]?.stringValue
        else {
            throw WarrenError(
                .invalidConfiguration,
                "a message to the ordered flow \(flow.name) needs a key: make its type a PartitionedMessage, or give the header \(WarrenHeader.partitionKey)"
            )
        }
        guard PartitionedFlow.isValidKey(key) else {
            throw WarrenError(
                .invalidConfiguration,
                "a partition key is 1–\(PartitionedFlow.maximumKeyBytes) bytes (got \(key.utf8.count)) for the flow \(flow.name)"
            )
        }
        return key
    }

    /// Publishes `message` to be delivered into a queue at `dueTime`, and returns its message id once the transport
    /// confirmed it: a job at a time, with no plugin (on RabbitMQ the levels of a ``DelayCascade``, which the first
    /// such publish declares). The message reaches its queue no earlier than `dueTime` and about a second later at
    /// most (the delay is counted in whole seconds, rounded up); a due time now or past sends it straight in. It
    /// carries `dueTime` in its `x-warren-due-at` header (milliseconds), and its `published` event carries
    /// `due_at_ms`: a ledger shows it `pending` until then.
    /// - Parameters:
    ///   - destination: `.queue(name)`; the queue must exist (declare it with ``declare(queue:retry:)``).
    ///   - dueTime: at most ``DelayCascade/maximumDelay`` (776 days) from now.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a destination other than a queue, a due time too far
    ///   ahead, or a queue name a topic routing key cannot carry (``DelayCascade/problem(withQueue:)``); otherwise
    ///   what ``publish(_:to:messageID:correlationID:causationID:headers:)`` throws.
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, at dueTime: Date, messageID: String = Self.newMessageID(),
        correlationID: String? = nil, causationID: String? = nil, headers: AMQPTable = [:]
    ) async throws -> String {
        try await publish(
            message, to: try Self.due(destination, at: dueTime), messageID: messageID, correlationID: correlationID,
            causationID: causationID, headers: headers)
    }

    /// Publishes `message` to be delivered into a queue once `delay` has passed: ``publish(_:to:at:messageID:correlationID:causationID:headers:)``
    /// at now + `delay`.
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, after delay: Duration, messageID: String = Self.newMessageID(),
        correlationID: String? = nil, causationID: String? = nil, headers: AMQPTable = [:]
    ) async throws -> String {
        try await publish(
            message, to: destination, at: try Self.dueTime(after: delay), messageID: messageID,
            correlationID: correlationID, causationID: causationID, headers: headers)
    }

    /// `destination` due at `dueTime`, checked.
    static func due(_ destination: Destination, at dueTime: Date) throws -> Destination {
        guard case .queue(let queue) = destination else {
            throw WarrenError(
                .invalidConfiguration,
                "a message due at a time goes into a queue (.queue(name)); \(destination) is not one")
        }
        _ = try DelayCascade.steps(toQueue: queue, at: dueTime)
        return .due(queue: queue, at: dueTime)
    }

    /// Now + `delay`, for a delay the cascade can hold.
    static func dueTime(after delay: Duration) throws -> Date {
        _ = try DelayCascade.steps(for: delay)
        let (seconds, attoseconds) = delay.components
        return Date().addingTimeInterval(TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18)
    }

    /// A producer span for publishing `count` messages to `destination`, a child of the current context.
    private func producerSpan(
        _ tracer: any Tracer, to destination: Destination, messageID: String?, correlationID: String?, count: Int
    ) -> any Span {
        let (exchange, routingKey) = MessagingSpan.exchangeAndRoutingKey(of: destination)
        let name = MessagingSpan.destination(exchange: exchange, routingKey: routingKey)
        let span = tracer.startSpan("publish \(name)", context: ServiceContext.current ?? .topLevel, ofKind: .producer)
        if span.isRecording {
            span.updateAttributes { attributes in
                attributes["messaging.system"] = "rabbitmq"
                attributes["messaging.operation.type"] = "send"
                attributes["messaging.destination.name"] = name
                attributes["messaging.rabbitmq.destination.routing_key"] = routingKey
                if let messageID { attributes["messaging.message.id"] = messageID }
                if let correlationID { attributes["messaging.message.conversation_id"] = correlationID }
                if count > 1 { attributes["messaging.batch.message_count"] = count }
            }
        }
        return span
    }

    /// Publishes `messages`, pipelined: all are sent before any confirm is awaited, which is much faster than one
    /// ``publish(_:to:messageID:correlationID:causationID:headers:)`` after the other.
    /// - Returns: per message, in order, its message id once the transport confirmed it, or why it failed (the
    ///   codec's error, `AMQPError` `.unroutable`, `.nacked`, …). A failure never stops the others.
    public func publish<M: WarrenMessage>(
        contentsOf messages: [M], to destination: Destination, correlationID: String? = nil, headers: AMQPTable = [:]
    ) async -> [Result<String, any Error>] {
        var results: [Result<String, any Error>] = Array(
            repeating: .failure(CancellationError()), count: messages.count)
        var outbound: [OutboundMessage] = []
        var positions: [Int] = []
        outbound.reserveCapacity(messages.count)
        // One producer span for the batch; every message carries its context.
        let tracer = tracing.activeTracer
        let span = tracer.map {
            producerSpan($0, to: destination, messageID: nil, correlationID: correlationID, count: messages.count)
        }
        defer { span?.end() }
        var batchHeaders = headers
        if let tracer, let span { tracer.inject(span.context, into: &batchHeaders, using: AMQPHeadersInjector()) }
        for (index, message) in messages.enumerated() {
            do {
                outbound.append(
                    try outboundMessage(
                        message, to: destination, messageID: Self.newMessageID(), correlationID: correlationID,
                        causationID: nil, headers: batchHeaders))
                positions.append(index)
            } catch {
                results[index] = .failure(error)
            }
        }
        for (sent, result) in await transport.publish(contentsOf: outbound).enumerated() {
            let messageID = outbound[sent].properties.messageID ?? ""
            switch result {
            case .failure(let error): span?.recordError(error)
            case .success: published(outbound[sent].properties, to: destination)
            }
            results[positions[sent]] = result.map { messageID }
        }
        return results
    }

    /// Sends messages built earlier with ``outboundMessage(_:to:messageID:correlationID:causationID:headers:)`` (an
    /// outbox's), pipelined where the transport can, each confirmed as ``publish(_:to:messageID:correlationID:causationID:headers:)``
    /// is.
    /// - Returns: one result per message, in order.
    public func publish(outbound messages: [OutboundMessage]) async -> [Result<Void, any Error>] {
        await transport.publish(contentsOf: messages)
    }

    /// The message ``publish(_:to:messageID:correlationID:causationID:headers:)`` would send, built but not sent: for
    /// an outbox (store it with the business data, send it later with ``publish(outbound:)``), or to look at what goes
    /// on the wire. The timestamp and `warren-published-at` header are the time of this call, and the trace context
    /// the one current now (the context the message is created in).
    /// - Throws: the codec's error.
    public func outboundMessage<M: WarrenMessage>(
        _ message: M, to destination: Destination, messageID: String = Self.newMessageID(),
        correlationID: String? = nil, causationID: String? = nil, headers: AMQPTable = [:]
    ) throws -> OutboundMessage {
        var headers = headers
        if let causationID { headers[Self.causationHeader] = .string(causationID) }
        if tracing.enabled, let current = ServiceContext.current {
            if let tracer = tracing.activeTracer {
                tracer.inject(current, into: &headers, using: AMQPHeadersInjector())
            } else if let incoming = current[IncomingTraceKey.self], headers[TraceHeader.traceParent] == nil {
                incoming.write(into: &headers)
            }
        }
        let now = Date()
        headers[WarrenHeader.publishedAt] = .int64(Int64(now.timeIntervalSince1970 * 1000))
        if case .due(_, let dueTime) = destination, let dueAt = UnixMilliseconds.from(dueTime) {
            headers[WarrenHeader.dueAt] = .int64(dueAt)
        }
        if case .partitioned(let flow) = destination {
            headers[WarrenHeader.partitionKey] = .string(try Self.partitionKey(of: message, headers: headers, in: flow))
        }
        let properties = AMQPProperties(
            contentType: codec.contentType, headers: headers, deliveryMode: .persistent,
            correlationID: correlationID, messageID: messageID, timestamp: now, type: M.messageType, appID: appID)
        return OutboundMessage(body: try codec.encode(message), destination: destination, properties: properties)
    }
}

extension MessageContext {
    /// Publishes a follow-up message whose correlation id is this message's (or its id), and whose causation id is
    /// this message's id.
    @discardableResult
    public func publish<M: WarrenMessage>(_ message: M, to destination: Destination, headers: AMQPTable = [:])
        async throws -> String
    {
        guard let publisher else {
            throw WarrenError(
                .noPublisher, "this message context has no publisher: make it with one to publish from a handler")
        }
        return try await publisher.publish(
            message, to: destination, correlationID: correlationID ?? messageID, causationID: messageID,
            headers: headers)
    }

    /// Publishes a follow-up message due into a queue at `dueTime`, correlated as
    /// ``publish(_:to:headers:)`` does; see ``WarrenPublisher/publish(_:to:at:messageID:correlationID:causationID:headers:)``
    /// for the precision and what it throws.
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, at dueTime: Date, headers: AMQPTable = [:]
    ) async throws -> String {
        try await publish(message, to: try WarrenPublisher.due(destination, at: dueTime), headers: headers)
    }

    /// Publishes a follow-up message due into a queue once `delay` has passed.
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, after delay: Duration, headers: AMQPTable = [:]
    ) async throws -> String {
        try await publish(message, to: destination, at: try WarrenPublisher.dueTime(after: delay), headers: headers)
    }
}

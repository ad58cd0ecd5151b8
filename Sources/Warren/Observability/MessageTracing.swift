import Tracing
import W3CTraceContext
import WarrenAMQP

/// How a ``Worker`` or a ``WarrenPublisher`` traces messages with swift-distributed-tracing.
///
/// The trace context travels in the message's AMQP headers, written and read by the tracer's own propagation (for
/// swift-otel, W3C `traceparent` and `tracestate`). A publish makes a producer span `publish <destination>` and
/// injects its context; handling a delivery makes a consumer span `process <destination>` linked to (or, with
/// ``ProcessSpanRelation/parent``, a child of) the context the message was created in. Retry copies, dead letters
/// and their replays keep that creation context, so one trace joins every attempt of a message.
///
/// A W3C `traceparent` that does not parse (wrong length or version, all-zero ids, not a string) is dropped, with its
/// `tracestate`: not extracted, not carried to copies, not logged. A valid one gives the handled delivery's log lines
/// their `trace_id` even when no tracer is set up, and a handler's follow-up messages carry it on.
public struct TracingOptions: Sendable {
    /// How a delivery's `process` span relates to the context its message was created in.
    public enum ProcessSpanRelation: Sendable, Hashable {
        /// A new trace linked to the creation context: what the OpenTelemetry messaging conventions recommend, since
        /// one message may be handled many times (retries, replays) long after its publisher's trace ended.
        case link
        /// A child of the creation context: one trace per message, handy when each message is handled once.
        case parent
    }

    /// Whether to read and write trace context at all. Off, no header is looked at and no span made.
    public var enabled: Bool
    /// The tracer; `nil` uses the process's (`InstrumentationSystem.tracer`, a no-op one until bootstrapped).
    public var tracer: (any Tracer)?
    public var processSpanRelation: ProcessSpanRelation

    public init(enabled: Bool = true, tracer: (any Tracer)? = nil, processSpanRelation: ProcessSpanRelation = .link) {
        self.enabled = enabled
        self.tracer = tracer
        self.processSpanRelation = processSpanRelation
    }

    /// No trace context read or written.
    public static let disabled = TracingOptions(enabled: false)

    /// The tracer to use now, `nil` when tracing is off or the tracer makes no spans.
    var activeTracer: (any Tracer)? {
        guard enabled else { return nil }
        let tracer = tracer ?? InstrumentationSystem.tracer
        return tracer is NoOpTracer ? nil : tracer
    }
}

/// The W3C trace headers.
public enum TraceHeader {
    public static let traceParent = "traceparent"
    public static let traceState = "tracestate"
}

/// A message's W3C trace context, validated: what Warren logs and passes on when no tracer makes spans.
struct IncomingTrace: Sendable, Hashable {
    /// A valid `traceparent`: `00-<trace id>-<span id>-<flags>`.
    var traceParent: String
    var traceState: String?

    /// Cut out of the validated header when asked for (most deliveries never need them).
    var traceID: String { String(traceParent.utf8.dropFirst(3).prefix(32))! }
    var spanID: String { String(traceParent.utf8.dropFirst(36).prefix(16))! }

    /// The longest `tracestate` passed on (the W3C limit for propagation).
    static let longestTraceState = 512

    /// Removes `traceparent` and `tracestate` from `headers` unless they are a valid W3C context; returns it when
    /// they are. A `tracestate` that does not parse, or is too long, is dropped alone.
    static func sanitize(_ headers: inout AMQPTable) -> IncomingTrace? {
        // `header(_:)` scans a small table instead of hashing: this runs for every delivery.
        guard let raw = headers.header(TraceHeader.traceParent) else {
            if headers.header(TraceHeader.traceState) != nil { headers[TraceHeader.traceState] = nil }
            return nil
        }
        guard case .string(let parent) = raw, parent.utf8.count == 55,
            (try? TraceContext(traceParentHeaderValue: parent)) != nil
        else {
            headers[TraceHeader.traceParent] = nil
            headers[TraceHeader.traceState] = nil
            return nil
        }
        var state: String?
        if let rawState = headers.header(TraceHeader.traceState) {
            if case .string(let value) = rawState, value.utf8.count <= longestTraceState,
                (try? TraceContext(traceParentHeaderValue: parent, traceStateHeaderValue: value)) != nil
            {
                state = value
            } else {
                headers[TraceHeader.traceState] = nil
            }
        }
        return IncomingTrace(traceParent: parent, traceState: state)
    }

    /// The trace and span ids of a `traceparent` value, when it is valid.
    static func ids(ofTraceParent value: String) -> (traceID: String, spanID: String)? {
        guard value.utf8.count == 55, (try? TraceContext(traceParentHeaderValue: value)) != nil else { return nil }
        let trace = IncomingTrace(traceParent: value)
        return (trace.traceID, trace.spanID)
    }

    /// Writes this context into `headers`, for a message published while handling one that carried it.
    func write(into headers: inout AMQPTable) {
        headers[TraceHeader.traceParent] = .string(traceParent)
        if let traceState { headers[TraceHeader.traceState] = .string(traceState) }
    }
}

/// The incoming W3C context of the delivery being handled, in the handler's service context: a follow-up message
/// published without a tracer passes it on.
enum IncomingTraceKey: ServiceContextKey {
    typealias Value = IncomingTrace
    static var nameOverride: String? { "warren.incoming-trace" }
}

/// Writes a tracer's propagation headers into AMQP headers, as strings.
struct AMQPHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout AMQPTable) {
        carrier[key] = .string(value)
    }
}

/// Reads a tracer's propagation headers out of AMQP headers (strings, or UTF-8 bytes).
struct AMQPHeadersExtractor: Extractor {
    func extract(key: String, from carrier: AMQPTable) -> String? {
        switch carrier[key] {
        case .string(let value): value
        case .bytes(let bytes): String(validating: bytes, as: UTF8.self)
        default: nil
        }
    }
}

/// Injects into a dictionary: to read a span's W3C ids for log lines.
private struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

extension Tracer {
    /// The W3C ids of the span in `context`, when this tracer propagates W3C `traceparent`.
    func w3cIDs(of context: ServiceContext) -> (traceID: String, spanID: String)? {
        var carrier: [String: String] = [:]
        inject(context, into: &carrier, using: DictionaryInjector())
        return carrier[TraceHeader.traceParent].flatMap(IncomingTrace.ids(ofTraceParent:))
    }
}

/// Names and attributes of the OpenTelemetry messaging conventions for RabbitMQ.
enum MessagingSpan {
    /// `messaging.destination.name` of a publish: `{exchange}:{routing key}`, the one that is set when the other is
    /// empty, `amq.default` when both are.
    static func destination(exchange: String, routingKey: String) -> String {
        switch (exchange.isEmpty, routingKey.isEmpty) {
        case (true, true): "amq.default"
        case (true, false): routingKey
        case (false, true): exchange
        case (false, false): "\(exchange):\(routingKey)"
        }
    }

    /// `messaging.destination.name` of a delivery: the publish's destination and the queue, the queue alone when the
    /// message came through the default exchange by the queue's name.
    static func destination(exchange: String, routingKey: String, queue: String) -> String {
        if exchange.isEmpty && (routingKey == queue || routingKey.isEmpty) { return queue }
        return "\(destination(exchange: exchange, routingKey: routingKey)):\(queue)"
    }

    static func exchangeAndRoutingKey(of destination: Destination) -> (exchange: String, routingKey: String) {
        switch destination {
        case .queue(let queue): ("", queue)
        case .exchange(let exchange, let routingKey): (exchange, routingKey)
        case .broadcast(let exchange, let routingKey): (exchange, routingKey)
        case .delay(let queue, _), .due(let queue, _): ("", queue)
        case .deadLetters(let queue): ("", queue)
        case .partitioned(let flow): (flow.name, "")
        }
    }
}

/// One delivery's tracing: its validated incoming context, the span handling it (when a tracer makes spans), the
/// service context its handler runs in, and the ids its log lines carry.
struct DeliveryTrace: Sendable {
    var span: (any Span)?
    /// What the handler runs in; `nil` when there is nothing to carry.
    var context: ServiceContext?
    var traceID: String?
    var spanID: String?

    /// Validates the trace headers of `headers` (dropping invalid ones) and, with a tracer, starts the `process` span.
    /// - Returns: `nil` when the delivery carries no valid context and no tracer makes spans: nothing to do.
    static func begin(
        _ delivery: TransportDelivery, headers: inout AMQPTable, queue: String, attempt: Int, tracer: (any Tracer)?,
        relation: TracingOptions.ProcessSpanRelation
    ) -> DeliveryTrace? {
        let incoming = IncomingTrace.sanitize(&headers)
        guard let tracer else {
            guard let incoming else { return nil }
            var context = ServiceContext.current ?? .topLevel
            context[IncomingTraceKey.self] = incoming
            return DeliveryTrace(context: context, traceID: incoming.traceID)
        }
        var extracted = ServiceContext.topLevel
        tracer.extract(headers, into: &extracted, using: AMQPHeadersExtractor())
        let properties = delivery.properties
        let destination = MessagingSpan.destination(
            exchange: delivery.exchange, routingKey: delivery.routingKey, queue: queue)
        let span = tracer.startSpan(
            "process \(destination)", context: relation == .parent ? extracted : .topLevel, ofKind: .consumer)
        if relation == .link, !extracted.isEmpty { span.addLink(SpanLink(context: extracted, attributes: [:])) }
        if span.isRecording {
            span.updateAttributes { attributes in
                attributes["messaging.system"] = "rabbitmq"
                attributes["messaging.operation.type"] = "process"
                attributes["messaging.destination.name"] = destination
                attributes["messaging.rabbitmq.destination.routing_key"] = delivery.routingKey
                attributes["messaging.rabbitmq.message.delivery_tag"] = Int64(truncatingIfNeeded: delivery.tag)
                if let id = properties.messageID { attributes["messaging.message.id"] = id }
                if let correlation = properties.correlationID {
                    attributes["messaging.message.conversation_id"] = correlation
                }
                if let type = properties.warrenMessageType { attributes["warren.message.type"] = type }
                attributes["warren.attempt"] = attempt
            }
        }
        let ids = tracer.w3cIDs(of: span.context)
        return DeliveryTrace(
            span: span, context: span.context, traceID: ids?.traceID ?? incoming?.traceID, spanID: ids?.spanID)
    }

    /// Records how the delivery was settled, and ends the span.
    func finish(outcome: SettlementEvent.Outcome, failure: String?) {
        guard let span else { return }
        if span.isRecording {
            span.updateAttributes { attributes in
                attributes["warren.outcome"] = outcome.name
                switch outcome {
                case .retried(let delay, let next):
                    attributes["warren.retry.delay_ms"] = delay.milliseconds
                    attributes["warren.retry.next_attempt"] = next
                case .deadLettered(let reason):
                    attributes["warren.dead_letter.reason"] = reason.kind.rawValue
                default: break
                }
            }
            if let failure { span.setStatus(SpanStatus(code: .error, message: failure)) }
        }
        span.end()
    }

    /// A settlement that failed (a copy not confirmed, an ack that could not be sent).
    func record(_ error: any Error) {
        span?.recordError(error)
    }
}
